"""A party's options, checked: the one place that turns them into a MeshConfig, for
`mpc-net run` and for the Python API (`mpc_net.setup`), with the same defaults and messages.

Pure apart from reading the key and roster files and the environment it is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from .argtypes import bounds_error
from .auth import NO_PROGRAM, Roster, program_hash
from .ice import (
    ENVIRONMENT_VARIABLE,
    IceConfigError,
    from_environment,
    is_loopback_host,
    parse_urls,
)
from .mesh import MeshConfig
from .transport import PEER_TIMEOUT
from .values import Value, factory

JOIN_TOKEN_VARIABLE = "MPC_NET_JOIN_TOKEN"


class ConfigError(ValueError):
    """Options that cannot work; the text says why in one line (naming the `mpc-net run`
    option, which the Python API's keyword arguments follow)."""


class PartyOptions(Value, mutable=True):
    """What a party of a room is told: `mpc-net run -M m -I i ...` or `mpc_net.setup(...)`."""

    parties: int
    index: int
    room: str | None = None
    signal: str | None = None
    key: str | None = None
    roster: str | None = None
    trust_room_server: bool = False
    ice: list[str] = factory(list)
    relay_only: bool = False
    native_only: bool = False
    join_token: str | None = None
    local_addresses: list[str] | None = None
    peer_timeout: float = PEER_TIMEOUT
    outage_limit: float = 0.0
    connect_timeout: float = 20.0
    join_timeout: float = 300.0
    program_hash: bytes = NO_PROGRAM  # of the program this party runs (program_file_hash)
    allow_different_programs: bool = False


def mesh_config(options: PartyOptions, environ: Mapping[str, str] = os.environ) -> MeshConfig:
    """Check `options` (and $MPC_NET_ICE, $MPC_NET_JOIN_TOKEN in `environ`) and make the
    MeshConfig; raises ConfigError before anything connects."""
    from .native.identity import verify
    from .signaling.protocol import ProtocolError, validate_room

    m, i = options.parties, options.index
    if not 0 <= i < m:
        raise ConfigError(f"-I {i} is out of range for -M {m} (0 <= i < m)")
    for name, value, strict in (("--peer-timeout", options.peer_timeout, True),
                                ("--connect-timeout", options.connect_timeout, True),
                                ("--join-timeout", options.join_timeout, True),
                                ("--outage-limit", options.outage_limit, False)):
        error = bounds_error(value, 0, strict=strict)
        if error is not None:
            raise ConfigError(f"{name} {error}: {value!r}")
    if options.room is None or options.signal is None:
        raise ConfigError("distributed mode (-I) needs --room NAME and --signal ws://HOST:PORT")
    try:
        validate_room(options.room)
    except ProtocolError as exc:
        raise ConfigError(exc.message) from None
    urls = options.signal.split(",")
    for url in urls:
        problem = signal_url_problem(url)
        if problem is not None:
            raise ConfigError(f"--signal {problem}")
    identity, roster = _credentials(options)
    servers = ice_servers(options.ice, environ)
    return MeshConfig(signaling_url=urls[0], fallback_urls=tuple(urls[1:]),
                      room=options.room, pid=i, parties=m,
                      identity=identity, verify=verify, roster=roster, ice_servers=servers,
                      relay_only=options.relay_only, outage_limit=options.outage_limit,
                      join_token=options.join_token or environ.get(JOIN_TOKEN_VARIABLE),
                      join_timeout=options.join_timeout,
                      connect_timeout=options.connect_timeout,
                      peer_timeout=options.peer_timeout, mix32_64bit=not options.native_only,
                      program_hash=options.program_hash,
                      allow_different_programs=options.allow_different_programs,
                      host_addresses=host_addresses(options))


def program_file_hash(path: str | os.PathLike) -> bytes:
    """auth.program_hash of the program in file `path`, for the handshake."""
    try:
        with open(path, "rb") as file:
            return program_hash(file.read())
    except OSError as exc:
        raise ConfigError(f"cannot read the program {os.fspath(path)}: {exc.strerror or exc}"
                          ) from None


def signal_url_problem(url: str) -> str | None:
    """What is wrong with a room server's URL, or None: for the CLI, the API and the page."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return f"must be ws://HOST:PORT or wss://HOST:PORT, not {url!r}"
    return None


def key_holder_problem(roster: Roster, public_key: bytes, index: int) -> str | None:
    """Whose key `public_key` is in `roster` if not party `index`'s (None: it is), in words
    for "your key ... , not party i's"; for the CLI, the API and the page."""
    holder = roster.index_of(public_key)
    if holder == index:
        return None
    return "is not in the roster" if holder is None else f"is party {holder}'s"


def ice_servers(urls: list[str], environ: Mapping[str, str] = os.environ) -> list[dict]:
    """The servers of `--ice` URLs, then of $MPC_NET_ICE."""
    try:
        return parse_urls(urls) + from_environment(environ.get(ENVIRONMENT_VARIABLE))
    except IceConfigError as exc:
        raise ConfigError(str(exc)) from None


def host_addresses(options: PartyOptions) -> list[str] | None:
    """The local addresses to offer host candidates on (None: every non-loopback one)."""
    if options.local_addresses:
        return list(options.local_addresses)
    if is_loopback_host(urlsplit(options.signal or "").hostname):
        return ["127.0.0.1"]
    return None


def _credentials(options: PartyOptions):
    """This party's identity and the roster, checked against -M and -I before anything runs."""
    from .auth import encode_public_key
    from .native.identity import FileIdentity, KeyFileError, load_roster

    if options.trust_room_server:
        if options.roster:
            raise ConfigError("--roster and --trust-room-server exclude each other")
        try:
            return (FileIdentity.load(options.key) if options.key
                    else FileIdentity.generate()), None
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from None
    if not options.key or not options.roster:
        raise ConfigError("distributed mode needs --key and --roster: each party makes a key with "
                          "`mpc-net keygen --out me.key`, then all agree on `mpc-net roster KEY0 "
                          "KEY1 ... --out roster.json` (or, weaker, --trust-room-server)")
    try:
        identity = FileIdentity.load(options.key)
        roster = load_roster(options.roster)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    if len(roster) != options.parties:
        raise ConfigError(f"the roster {options.roster} lists {len(roster)} parties, "
                          f"not -M {options.parties}")
    where = key_holder_problem(roster, identity.public_key, options.index)
    if where is not None:
        raise ConfigError(f"your key {encode_public_key(identity.public_key)} {where}, "
                          f"not party {options.index}'s")
    return identity, roster
