"""ICE servers: `--ice` URLs, the MPC_NET_ICE variable, and TURN REST credentials.

Servers are W3C RTCIceServer dictionaries (`urls`, `username`, `credential`), the form the room
server sends and browsers take. Pure code, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from urllib.parse import unquote

from .values import Value

ENVIRONMENT_VARIABLE = "MPC_NET_ICE"

# Compiled when first used (re's cache): most runs name no ICE server.
_URL = (
    r"(?P<scheme>stuns?|turns?):"
    r"(?:(?P<user>[^:@/?]+):(?P<password>[^@/?]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>[a-z]+))?")

USAGE = ("stun:HOST[:PORT], turn:USER:PASS@HOST[:PORT][?transport=udp|tcp] "
         "or turns:USER:PASS@HOST[:PORT]")


class IceConfigError(ValueError):
    """An ICE server URL that cannot be used; the text says why."""


def parse_url(text: str, *, credentials: bool = True) -> dict:
    """One `--ice` URL as an RTCIceServer dictionary (credentials split off the URL).

    With credentials=False a TURN URL must come without them (the room server adds its own).
    """
    match = re.fullmatch(_URL, text.strip())
    if match is None:
        raise IceConfigError(f"malformed ICE server URL {text!r}; expected {USAGE}")
    scheme, host, port, transport = match.group("scheme", "host", "port", "transport")
    if port is not None and not 0 < int(port) < 65536:
        raise IceConfigError(f"port out of range in {text!r}")
    # What aiortc cannot use is refused here rather than when the first connection is made.
    if host.startswith("["):
        raise IceConfigError(f"aiortc cannot use an IPv6 address in an ICE server URL; give a "
                             f"host name or an IPv4 address: {text!r}")
    if scheme == "stuns":
        raise IceConfigError(f"aiortc does not support STUN over TLS (stuns:); use stun: or a "
                             f"turns: relay: {text!r}")
    address = f"{host}:{port}" if port else host
    if scheme.startswith("stun"):
        if match.group("user") is not None or transport is not None:
            raise IceConfigError(f"a STUN URL takes no credentials and no transport: {text!r}")
        return {"urls": [f"{scheme}:{address}"]}
    if credentials and match.group("user") is None:
        raise IceConfigError(f"a TURN URL needs credentials, turn:USER:PASS@HOST: {text!r}")
    if not credentials and match.group("user") is not None:
        raise IceConfigError(f"give this TURN URL without credentials: {text!r}")
    allowed = {"turn": ("udp", "tcp"), "turns": ("tcp",)}[scheme]
    if transport is not None and transport not in allowed:
        raise IceConfigError(f"{scheme}: supports transport={' or '.join(allowed)}: {text!r}")
    query = f"?transport={transport}" if transport else ""
    server = {"urls": [f"{scheme}:{address}{query}"]}
    if credentials:
        server.update(username=unquote(match.group("user")),
                      credential=unquote(match.group("password")))
    return server


def parse_urls(texts: list[str]) -> list[dict]:
    return [parse_url(text) for text in texts]


def from_environment(value: str | None) -> list[dict]:
    """Servers from MPC_NET_ICE: URLs separated by spaces or commas."""
    return parse_urls([part for part in re.split(r"[\s,]+", value or "") if part])


def server_kinds(servers: list[dict]) -> tuple[list[str], list[str]]:
    """The STUN and TURN URLs of `servers`, in order."""
    stun, turn = [], []
    for server in servers:
        for url in server["urls"]:
            (stun if url.startswith("stun") else turn).append(url)
    return stun, turn


def unused(servers: list[dict]) -> list[str]:
    """URLs aiortc will ignore: it uses only the first STUN and the first TURN server."""
    stun, turn = server_kinds(servers)
    return stun[1:] + turn[1:]


def turn_rest_credentials(secret: str, expires: int, user: str) -> tuple[str, str]:
    """Short-lived TURN credentials in the TURN REST scheme (coturn's `use-auth-secret`):
    the username carries its expiry time, the password is an HMAC of it under the shared
    secret, so the TURN server checks them without knowing any user."""
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class TurnRest(Value):
    """A TURN server that shares `secret` with the room server, which hands each party
    credentials valid for `ttl` seconds (renewed while its seat stays)."""

    url: str
    secret: str
    ttl: int = 600

    def __post_init__(self) -> None:
        parse_url(self.url, credentials=False)
        if not self.url.startswith("turn"):
            raise IceConfigError(f"not a TURN URL: {self.url!r}")
        if not self.secret:
            raise IceConfigError("the TURN secret is empty")

    def server_for(self, user: str, now: float) -> dict:
        username, credential = turn_rest_credentials(self.secret, int(now) + self.ttl, user)
        return {**parse_url(self.url, credentials=False), "username": username,
                "credential": credential}


def is_loopback_host(host: str | None) -> bool:
    """Whether a room server at `host` is on this machine (then only 127.0.0.1 is offered)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
