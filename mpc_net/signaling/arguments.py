"""The options of the room server: its limits, its tokens and its log format."""

from __future__ import annotations

import argparse

from ..argtypes import number
from .limits import Limits


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the limit options (and --log-format) to the `mpc-net signal` parser."""
    d = Limits()
    group = parser.add_argument_group("limits (0 turns a timeout or the address limit off)")
    group.add_argument("--max-message-bytes", type=number(int, 1), default=d.max_message_bytes,
                       metavar="BYTES", help="largest message a client may send "
                       f"(default: {d.max_message_bytes})")
    group.add_argument("--messages-per-second", type=number(float, 0, strict=True),
                       default=d.messages_per_second, metavar="RATE",
                       help="sustained messages per second per connection; more get a "
                       "rate-limited error, and a connection that keeps on is closed "
                       f"(default: {d.messages_per_second:g})")
    group.add_argument("--message-burst", type=number(int, 1), default=d.message_burst,
                       metavar="N", help="messages a connection may send at once above the rate "
                       f"(default: {d.message_burst})")
    group.add_argument("--max-rooms", type=number(int, 1), default=d.max_rooms, metavar="N",
                       help=f"rooms open at once (default: {d.max_rooms})")
    group.add_argument("--max-connections", type=number(int, 1), default=d.max_connections,
                       metavar="N", help="connections open at once, which bounds the memory "
                       f"(default: {d.max_connections})")
    group.add_argument("--max-connections-per-address", type=number(int, 0),
                       default=d.max_connections_per_address, metavar="N",
                       help="connections from one client IP address; behind a proxy all "
                       f"clients share its address (default: {d.max_connections_per_address})")
    group.add_argument("--join-timeout", type=number(float, 0), default=d.join_timeout,
                       metavar="SECONDS", help="close a connection that is not in a room this "
                       f"long after connecting or leaving (default: {d.join_timeout:g})")
    group.add_argument("--idle-timeout", type=number(float, 0), default=d.idle_timeout,
                       metavar="SECONDS", help="close a connection in a room that sends nothing "
                       "this long; keep it above the parties' --join-timeout "
                       f"(default: {d.idle_timeout:g})")
    group.add_argument("--send-queue-messages", type=number(int, 1),
                       default=d.send_queue_messages, metavar="N",
                       help="messages waiting for a slow reader before it is disconnected "
                       f"(default: {d.send_queue_messages})")
    group.add_argument("--send-queue-bytes", type=number(int, 1), default=d.send_queue_bytes,
                       metavar="BYTES", help="bytes waiting for a slow reader before it is "
                       "disconnected; at least --max-message-bytes "
                       f"(default: {d.send_queue_bytes})")
    group.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web origin (https://host[:port]) whose browser pages may connect "
                       "(repeatable); if given, other browser origins get HTTP 403, while "
                       "clients that send no Origin stay allowed (default: any origin)")
    group.add_argument("--join-token", action="append", default=[], type=_token, metavar="TOKEN",
                       help="require this token in every join (repeatable: any one of them "
                       "will do); a join without it gets a bad-token error (default: none)")
    group.add_argument("--join-token-file", action="append", default=[], type=_token_file,
                       metavar="FILE", help="tokens as for --join-token, one per line; keeps "
                       "them out of process listings")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines, or one JSON object per line for log collectors "
                        "(default: text)")


def limits_from(options: argparse.Namespace) -> Limits:
    """The Limits of options parsed with add_limit_arguments; raise ValueError if they clash."""
    tokens = [*options.join_token, *(t for tokens in options.join_token_file for t in tokens)]
    return Limits(
        max_message_bytes=options.max_message_bytes,
        messages_per_second=options.messages_per_second,
        message_burst=options.message_burst,
        max_rooms=options.max_rooms,
        max_connections=options.max_connections,
        max_connections_per_address=options.max_connections_per_address,
        join_timeout=options.join_timeout,
        idle_timeout=options.idle_timeout,
        send_queue_messages=options.send_queue_messages,
        send_queue_bytes=options.send_queue_bytes,
        allowed_origins=tuple(options.allowed_origin),
        join_tokens=tuple(dict.fromkeys(tokens)),
    )


def _token(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a join token must not be empty")
    return text


def _token_file(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as f:
            tokens = tuple(line.strip() for line in f if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc}") from None
    if not tokens:
        raise argparse.ArgumentTypeError(f"no token in {path}")
    return tokens
