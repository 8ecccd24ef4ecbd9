"""The options of the room server, for `mpc-net signal` and `mpc-net web`: where to listen,
what to hand to parties, its limits and its log."""

from __future__ import annotations

import argparse
import importlib.util
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..argtypes import at_least_zero_float, at_least_zero_int, port, positive_float, positive_int
from ..ice import TurnRest
from .limits import Limits
from .logs import event, logger, setup_logging


def add_signal_arguments(parser: argparse.ArgumentParser) -> None:
    """All options of `mpc-net signal`."""
    add_listen_arguments(parser, 8765, "TCP port to listen on")
    parser.add_argument("--turn-url", metavar="URL",
                        help="TURN server sharing --turn-secret (coturn: use-auth-secret), "
                             "turn:HOST[:PORT][?transport=udp|tcp] without credentials; every "
                             "party that proves its seat (and holds a join token) gets "
                             "short-lived credentials for it, renewed while it stays")
    parser.add_argument("--turn-secret", metavar="SECRET",
                        help="the shared secret (coturn: static-auth-secret); also from "
                             "$MPC_NET_TURN_SECRET, which keeps it out of process listings")
    parser.add_argument("--turn-ttl", type=positive_int, default=TurnRest.ttl,
                        metavar="SECONDS", help="how long handed-out TURN credentials stay "
                        "valid (default %(default)s)")
    parser.add_argument("--turn-open-relay", action="store_true",
                        help="hand TURN credentials to parties without a join token: anyone "
                             "who can take a seat may then relay through the TURN server")
    add_limit_arguments(parser)


def add_listen_arguments(parser: argparse.ArgumentParser, default_port: int,
                         port_help: str) -> None:
    """Where a room server listens, what it hands to parties and how much it logs: options
    of every command that runs one (add_limit_arguments too)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=port, default=default_port,
                        help=f"{port_help} (default %(default)s; 0 picks a free one)")
    parser.add_argument("--ice", action="append", metavar="URL",
                        help="a STUN or TURN server to hand to every party (repeatable; "
                             "same forms as for `mpc-net run --ice`)")
    parser.add_argument("--tls-certificate", metavar="PEM",
                        help="serve over TLS (wss://, and https:// for pages) with this "
                             "certificate chain, with --tls-key; browsers on other machines "
                             "need TLS, from here or from a reverse proxy in front")
    parser.add_argument("--tls-key", metavar="PEM",
                        help="the unencrypted private key of --tls-certificate")
    parser.add_argument("--redis", type=_redis_url, metavar="URL",
                        help="share rooms with every other room-server process started with "
                             "the same redis://HOST[:PORT][/DB] (or rediss://, unix://PATH); "
                             "needs the redis package: pip install 'mpc-net[redis]'")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log every join, leave and error")


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the limit options (and --log-format) to the parser of a room server command."""
    d = Limits()
    group = parser.add_argument_group("limits (0 turns a timeout or the address limit off)")
    group.add_argument("--max-message-bytes", type=positive_int, default=d.max_message_bytes,
                       metavar="BYTES", help="largest message a client may send "
                       f"(default: {d.max_message_bytes})")
    group.add_argument("--messages-per-second", type=positive_float,
                       default=d.messages_per_second, metavar="RATE",
                       help="sustained messages per second per connection; more get a "
                       "rate-limited error, and a connection that keeps on is closed "
                       f"(default: {d.messages_per_second:g})")
    group.add_argument("--message-burst", type=positive_int, default=d.message_burst,
                       metavar="N", help="messages a connection may send at once above the rate "
                       f"(default: {d.message_burst})")
    group.add_argument("--max-rooms", type=positive_int, default=d.max_rooms, metavar="N",
                       help=f"rooms open at once (default: {d.max_rooms})")
    group.add_argument("--max-connections", type=positive_int, default=d.max_connections,
                       metavar="N", help="connections open at once, which bounds the memory "
                       f"(default: {d.max_connections})")
    group.add_argument("--max-connections-per-address", type=at_least_zero_int,
                       default=d.max_connections_per_address, metavar="N",
                       help="connections from one client IP address; behind a proxy all "
                       f"clients share its address (default: {d.max_connections_per_address})")
    group.add_argument("--max-pending-joins", type=positive_int, default=d.max_pending_joins,
                       metavar="N", help="with --redis: joins waiting for Redis at once; more "
                       "are refused as busy, and parties try again "
                       f"(default: {d.max_pending_joins})")
    group.add_argument("--seat-timeout", type=at_least_zero_float, default=d.seat_timeout,
                       metavar="SECONDS", help="close a connection that has no seat in a room "
                       f"this long after connecting or leaving (default: {d.seat_timeout:g})")
    # Until a party's --join-timeout (how long it waits for the others) was told apart from it.
    group.add_argument("--join-timeout", dest="seat_timeout", type=at_least_zero_float,
                       action=_DeprecatedAlias, replacement="--seat-timeout",
                       default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    group.add_argument("--idle-timeout", type=at_least_zero_float, default=d.idle_timeout,
                       metavar="SECONDS", help="close a connection in a room that sends nothing "
                       "this long; keep it above the parties' `mpc-net run --join-timeout` "
                       f"(default: {d.idle_timeout:g})")
    group.add_argument("--send-queue-messages", type=positive_int,
                       default=d.send_queue_messages, metavar="N",
                       help="messages waiting for a slow reader before it is disconnected "
                       f"(default: {d.send_queue_messages})")
    group.add_argument("--send-queue-bytes", type=positive_int, default=d.send_queue_bytes,
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


def start_logging(options: argparse.Namespace) -> None:
    """Start the log of a room server command, and say in it (once each, so that JSON logs stay
    JSON) which deprecated spellings of options the command line used."""
    setup_logging(options.log_format, options.verbose > 0)
    for old, new in getattr(options, "deprecated_options", {}).items():
        logger.warning("option %s is now %s; the old name is deprecated", old, new,
                       extra=event("deprecated-option", option=old, replacement=new))


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: it still works, and start_logging says what replaces it."""

    def __init__(self, *args: Any, replacement: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        vars(namespace).setdefault("deprecated_options", {})[option_string] = self.replacement
        setattr(namespace, self.dest, values)


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
        max_pending_joins=options.max_pending_joins,
        seat_timeout=options.seat_timeout,
        idle_timeout=options.idle_timeout,
        send_queue_messages=options.send_queue_messages,
        send_queue_bytes=options.send_queue_bytes,
        allowed_origins=tuple(options.allowed_origin),
        join_tokens=tuple(dict.fromkeys(tokens)),
    )


def tls_from(options: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context, None without --tls-certificate; ValueError in one line."""
    certificate, key = options.tls_certificate, options.tls_key
    if not certificate and not key:
        return None
    if not (certificate and key):
        raise ValueError("--tls-certificate and --tls-key go together")
    for path in (certificate, key):  # OpenSSL's own error would not say which file
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # Never a password prompt: a server started by a service manager has no one to answer.
        context.load_cert_chain(certificate, key, password=_no_password)
    except _EncryptedKey:
        raise ValueError(f"{key} is encrypted; give the key unencrypted, readable only by the "
                         "user that runs the server") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None)  # OpenSSL's, when it names one
        detail = f" ({reason.lower().replace('_', ' ')})" if reason else ""
        raise ValueError(f"{certificate} and {key} are not a PEM certificate and its "
                         f"private key{detail}") from None
    return context


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey


def _redis_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    database = parts.path.removeprefix("/")
    if parts.scheme == "unix":
        usable = bool(parts.path)
    else:
        usable = (parts.scheme in ("redis", "rediss") and bool(parts.hostname) and port_ok
                  and (not database or database.isdigit()))
    if not usable:
        raise argparse.ArgumentTypeError(
            f"must be redis://HOST[:PORT][/DB], rediss://... or unix://PATH, not {text!r}")
    if importlib.util.find_spec("redis") is None:
        raise argparse.ArgumentTypeError("needs the redis package: pip install 'mpc-net[redis]'")
    return text


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
