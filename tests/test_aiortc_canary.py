"""Canary: each private member of aiortc and aioice that mpc-net relies on, by name and kind.

aiortc and aioice are pinned because mpc_net/rtc/ (sctp.py, acks.py, patches.py, lean.py) reaches
inside them. When a release renames or reshapes one of these members, this test names it, so
that raising the pin is a decision: adapt mpc-net's code, or meanwhile run with
MPC_NET_STOCK_SCTP=1, which leaves every member marked `sctp` unused. A second test keeps the
list complete: any private name that the modules importing aiortc or aioice use and that aiortc
also has must be on it.
"""

from __future__ import annotations

import ast
import asyncio
import asyncio.selector_events
import inspect
import subprocess
import sys
import types
from collections import deque
from dataclasses import dataclass

import aioice
import aioice.ice
import aioice.turn
import aiortc
import aiortc.rtcdtlstransport
import aiortc.rtcsctptransport as sctp_module
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from helpers import ROOT


@dataclass(frozen=True)
class Member:
    owner: str  # a key of `owners()`
    name: str
    kind: str  # "method", "coroutine", "attribute" (of a live object), "annotated", "constant",
    # "assigned" (by the owner's class once connected: `self.NAME = ...` in its source)
    params: tuple[str, ...] | None = None  # of a method, after self
    type: type | tuple[type, ...] | None = None  # of an attribute or constant
    sctp: bool = True  # used only with mpc-net's SCTP changes (MPC_NET_STOCK_SCTP=0)


def _methods(owner: str, kind: str, signatures: dict[str, tuple[str, ...]]) -> list[Member]:
    return [Member(owner, name, kind, params) for name, params in signatures.items()]


def _attributes(owner: str, types: dict[str, type | tuple[type, ...] | None],
                kind: str = "attribute") -> list[Member]:
    return [Member(owner, name, kind, type=t) for name, t in types.items()]


_OPTIONAL_INT = (int, type(None))
_OPTIONAL_FLOAT = (float, type(None))

RELIED_ON: list[Member] = [
    # sctp.py, acks.py: PiggybackSctpTransport overrides or calls these on aiortc's association.
    *_methods("RTCSctpTransport", "coroutine", {
        "_send_sack": (), "_send_chunk": ("chunk",), "_receive_sack_chunk": ("chunk",),
        "_transmit": (), "_data_channel_flush": (),
        "_send": ("stream_id", "pp_id", "user_data", "expiry", "max_retransmits", "ordered")}),
    *_methods("RTCSctpTransport", "method", {
        "_t3_expired": (), "_t3_start": (), "_get_inbound_stream": ("stream_id",),
        "_update_rto": ("R",),
        "_data_channel_send": ("channel", "data"), "_set_state": ("state",),
        "_flight_size_increase": ("chunk",), "_flight_size_decrease": ("chunk",)}),
    *_attributes("RTCSctpTransport", {
        "_association_state": sctp_module.RTCSctpTransport.State,
        "_sack_misordered": set, "_sack_duplicates": list, "_sack_needed": bool,
        "_loop": asyncio.AbstractEventLoop, "_forward_tsn_chunk": None, "_sent_queue": deque,
        "_fast_recovery_exit": _OPTIONAL_INT, "_flight_size": int, "_cwnd": int,
        "_outbound_queue": deque, "_t3_handle": None, "_inbound_streams": dict,
        "_remote_max_message_size": int, "_data_channel_queue": deque, "_data_channels": dict,
        "_last_received_tsn": _OPTIONAL_INT, "_advertised_rwnd": int, "_local_port": int,
        "_remote_port": _OPTIONAL_INT, "_remote_verification_tag": int, "_rto": (int, float),
        "_srtt": _OPTIONAL_FLOAT, "_rttvar": _OPTIONAL_FLOAT, "_last_sacked_tsn": int,
        "_local_tsn": int, "_fast_recovery_transmit": bool, "_partial_bytes_acked": int}),
    *_attributes("RTCSctpTransport.State", {"ESTABLISHED": sctp_module.RTCSctpTransport.State,
                                            "CLOSED": sctp_module.RTCSctpTransport.State,
                                            "COOKIE_ECHOED": sctp_module.RTCSctpTransport.State}),
    *_methods("RTCDtlsTransport", "coroutine", {"_send_data": ("data",)}),
    *_methods("RTCDataChannel", "method", {"_addBufferedAmount": ("amount",),
                                           "_setReadyState": ("state",)}),
    *_attributes("DataChunk", {"_retransmit": None, "_sent_count": None, "_sent_time": None,
                               "_acked": None, "_book_size": None, "_misses": None},
                kind="annotated"),
    Member("RTCSctpTransport", "_ssthresh", "assigned"),
    *_attributes("SackChunk()", {"cumulative_tsn": int, "advertised_rwnd": int,
                                 "duplicates": list, "gaps": list}),
    *_methods("InboundStream", "method", {"add_chunk": ("chunk",), "pop_messages": (),
                                          "prune_chunks": ("tsn",)}),
    *_attributes("InboundStream()", {"reassembly": list}),
    *_attributes("aiortc.rtcsctptransport", {
        "SCTP_DATA_LAST_FRAG": int, "SCTP_DATA_FIRST_FRAG": int, "SCTP_MAX_PACKET_LENGTH": int,
        "SCTP_RTO_MAX": (int, float),
        "SCTP_TSN_MODULO": int, "USERDATA_MAX_LENGTH": int, "WEBRTC_BINARY": int,
        "WEBRTC_DCEP": int,
        "Chunk": type, "DataChunk": type, "InboundStream": type, "SackChunk": type,
        "crc32c": None, "tsn_plus_one": None}, kind="constant"),
    # receive.py: datagrams handed to aiortc's receive step as they arrive.
    *_methods("RTCDtlsTransport", "coroutine", {"_recv_next": ()}),
    *_attributes("RTCDtlsTransport", {"_state": aiortc.rtcdtlstransport.State}),
    *_attributes("RTCIceTransport", {"_recv": None}),
    *_attributes("aioice.Connection", {"_queue": asyncio.Queue}),
    *_attributes("aiortc.rtcdtlstransport", {"State": type}, kind="constant"),
    # receive.py, send.py: DTLS records told from STUN by their first byte, and sent to the
    # nominated pair's socket; acks.py: the next TSN in order marked without aiortc's sorting.
    *_attributes("aioice.Connection", {"_protocols": list}),
    *_attributes("aioice.ice", {"StunProtocol": type}, kind="constant"),
    *_attributes("RTCDtlsTransport", {"_ssl": None}),
    # send.py: the OpenSSL bindings aiortc's DTLS runs on, for their error class.
    *_attributes("aiortc.rtcdtlstransport", {"SSL": types.ModuleType}, kind="constant"),
    *_methods("RTCSctpTransport", "method", {"_mark_received": ("tsn",)}),
    # native.py: the nominated candidate pair (selected_path); with either SCTP.
    Member("RTCIceTransport", "_connection", "attribute", type=aioice.Connection, sctp=False),
    Member("aioice.Connection", "_nominated", "attribute", type=dict, sctp=False),
    # patches.py: process-wide, with either SCTP; aioice must look both up when it uses them.
    Member("aioice.ice", "get_host_addresses", "constant", sctp=False),
    Member("aioice.turn", "UDP_SOCKET_BUFFER_SIZE", "constant", type=int, sctp=False),
]

VERSIONS = f"aiortc {aiortc.__version__}, aioice {aioice.__version__}"


@pytest.fixture
async def owners():
    """Where each member lives: aiortc's own classes, and live objects of a new connection."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("mpc-net", negotiated=True, id=0)
    association = pc.sctp
    ice = association.transport.transport
    yield {
        "RTCSctpTransport": association,
        "RTCSctpTransport.State": sctp_module.RTCSctpTransport.State,
        "RTCDtlsTransport": association.transport,
        "RTCIceTransport": ice,
        "aioice.Connection": getattr(ice, "_connection", None),
        "RTCDataChannel": channel,
        "DataChunk": sctp_module.DataChunk,
        "SackChunk()": sctp_module.SackChunk(),
        "InboundStream": sctp_module.InboundStream,
        "InboundStream()": sctp_module.InboundStream(),
        "aiortc.rtcsctptransport": sctp_module,
        "aiortc.rtcdtlstransport": aiortc.rtcdtlstransport,
        "aioice.ice": aioice.ice,
        "aioice.turn": aioice.turn,
    }
    await pc.close()


def problem(member: Member, owner: object) -> str | None:
    """What is wrong with `member` on `owner` (None: it is as mpc-net expects)."""
    if member.kind == "annotated":
        hints = {}
        for cls in reversed(owner.__mro__):
            hints.update(getattr(cls, "__annotations__", {}))
        return None if member.name in hints else "no longer declared"
    if member.kind == "assigned":
        cls = owner if isinstance(owner, type) else type(owner)
        return None if f"self.{member.name} = " in inspect.getsource(cls) else "is never assigned"
    if member.kind in ("method", "coroutine"):
        cls = owner if isinstance(owner, type) else type(owner)
        try:
            function = inspect.getattr_static(cls, member.name)
        except AttributeError:
            return "is gone"
        if not inspect.isfunction(function):
            return f"is no longer a method but {type(function).__name__}"
        if inspect.iscoroutinefunction(function) != (member.kind == "coroutine"):
            return "changed between coroutine and plain method"
        params = tuple(inspect.signature(function).parameters)[1:]
        if params != member.params:
            return f"takes {params} instead of {member.params}"
        return None
    if not hasattr(owner, member.name):
        return "is gone"
    value = getattr(owner, member.name)
    if member.type is None:
        return None if member.kind == "attribute" or callable(value) or isinstance(
            value, type) else f"is no longer callable but {type(value).__name__}"
    if not isinstance(value, member.type):
        return f"is a {type(value).__name__}, not {member.type}"
    return None


async def test_every_private_member_relied_on_is_still_there(owners) -> None:
    problems = []
    for member in RELIED_ON:
        owner = owners[member.owner]
        found = "its owner is gone" if owner is None else problem(member, owner)
        if found:
            fallback = ("; MPC_NET_STOCK_SCTP=1 does without it" if member.sctp
                        else "; mpc-net needs it with either SCTP")
            problems.append(f"{member.owner}.{member.name} ({member.kind}) {found}{fallback}")
    assert not problems, (f"{VERSIONS} changed what mpc-net relies on (before raising the pin, "
                          "adapt mpc_net/rtc):\n" + "\n".join(problems))


def test_aioice_looks_up_the_patched_names_when_it_uses_them() -> None:
    # patches.py replaces module globals; aioice must read them at call time, not bind them
    # at import (then the patch would silently do nothing).
    ice_source = inspect.getsource(aioice.ice)
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection), VERSIONS
    assert "turn.UDP_SOCKET_BUFFER_SIZE" in ice_source, VERSIONS
    assert "SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE" in inspect.getsource(aioice.turn), VERSIONS


def test_aiortc_receives_through_the_hooks_that_receive_py_replaces() -> None:
    # rtc/receive.py replaces aioice's Connection.data_received on the instance and
    # RTCIceTransport._recv; both must be looked up at each datagram.
    assert "self.receiver.data_received(" in inspect.getsource(aioice.ice.StunProtocol), VERSIONS
    assert "self.transport._recv()" in inspect.getsource(
        aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next), VERSIONS
    # receive.py also replaces datagram_received on aioice's protocols (asyncio looks it up at
    # each datagram), and send.py does what _send_data and _write_ssl do, for one record.
    assert "self._protocol.datagram_received(" in inspect.getsource(
        asyncio.selector_events._SelectorDatagramTransport._read_ready)
    assert "self._ssl.bio_read(1500)" in inspect.getsource(
        aiortc.rtcdtlstransport.RTCDtlsTransport._write_ssl), VERSIONS


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_names_of_aiortc_used() -> dict[str, set[str]]:
    """Per module of mpc-net that imports aiortc or aioice: the private names that may be theirs.

    That is every private name in a class derived from one of aiortc's, and elsewhere every
    private attribute of something other than `self` (mpc-net's own classes keep theirs there).
    """
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "mpc_net").rglob("*.py")):
        tree = ast.parse(path.read_text())
        from_aiortc = {alias.asname or alias.name for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and not node.level
                       and node.module and node.module.split(".")[0] in ("aiortc", "aioice")
                       for alias in node.names}
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        if not from_aiortc and not imported & {"aiortc", "aioice"}:
            continue
        derived = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                   and any(isinstance(b, ast.Name) and b.id in from_aiortc for b in node.bases)]
        names = {node.name for cls in derived for node in ast.walk(cls)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        names |= {node.attr for cls in derived for node in ast.walk(cls)
                  if isinstance(node, ast.Attribute)}
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and not (isinstance(node.value, ast.Name) and node.value.id == "self")}
        found[str(path.relative_to(ROOT))] = set(filter(_private, names))
    return found


async def test_the_list_names_every_private_member_of_aiortc_used(owners) -> None:
    used = private_names_of_aiortc_used()
    assert "_nominated" in used["mpc_net/native/peer.py"]
    assert "_send_sack" in used["mpc_net/rtc/acks.py"]
    listed = {member.name for member in RELIED_ON}
    unlisted = []
    for path, names in used.items():
        for name in sorted(names - listed):
            # Then it is mpc-net's own name, and must not be one of aiortc's too: that would be
            # a private member used unlisted, or ours overwriting aiortc's.
            holders = [key for key, owner in owners.items()
                       if owner is not None and hasattr(owner, name)]
            if holders:
                unlisted.append(f"{path}: {name} (also on {', '.join(holders)})")
    assert not unlisted, (f"{VERSIONS}: private names of aiortc/aioice used but not in "
                          "RELIED_ON:\n" + "\n".join(unlisted))


_DEFERRED = """
import sys
before = list(sys.meta_path)
import mpc_net.native.peer, mpc_net.native.signaling
assert sys.meta_path == before, "lean_imports left its finder installed"
lazy = {name for name, module in sys.modules.items() if type(module).__name__ == "_LazyModule"}
assert {"ifaddr", "importlib.metadata", "urllib.request", "calendar"} <= lazy, sorted(lazy)
# email.utils: cryptography's RFC822Name loads it when it first parses an address; the program's
# own `import email.utils` is the module itself.
assert "email.utils" not in sys.modules and "email._parseaddr" not in sys.modules
from cryptography import x509
general_name = sys.modules["cryptography.x509.general_name"]
assert type(sys.modules["email"].utils).__name__ == "_Forwarding"
assert x509.RFC822Name("user@peer.example").value == "user@peer.example"
for value in ("Name <user@peer.example>", "<>"):  # parseaddr finds a name, or no address
    try:
        x509.RFC822Name(value)
    except ValueError as exc:
        assert str(exc) == "Invalid rfc822name value", exc
    else:
        raise AssertionError(f"RFC822Name took {value!r}")
import email.utils
assert type(email.utils).__name__ == "module" and sys.modules["email.utils"] is email.utils
assert general_name.parseaddr("A <a@b>") == email.utils.parseaddr("A <a@b>") == ("A", "a@b")

# aioice.mdns (with dnspython): loaded for the first remote candidate whose name may be an mDNS
# one, and then it answers; aioice.ice's annotation with its protocol class is a placeholder.
import aioice.ice
assert not [name for name in sys.modules if name.startswith(("dns", "aioice.mdns"))]
for name in ("192.0.2.1", "2001:db8::1", "peer.example", "local", "x.localhost"):
    assert aioice.ice.mdns.is_mdns_hostname(name) is False, name
assert not [name for name in sys.modules if name.startswith(("dns", "aioice.mdns"))]
assert aioice.ice.mdns.is_mdns_hostname("a-1.local") is True
assert type(sys.modules["aioice.mdns"]).__name__ == "module" and "dns.message" in sys.modules
import aioice.mdns
names = ("a-1.local", "a.b.local", "a.local" + chr(10))  # "$" matches before a last newline
assert [aioice.ice.mdns.is_mdns_hostname(n) for n in names] \\
    == [aioice.mdns.is_mdns_hostname(n) for n in names] == [True, False, True]
assert aioice.ice.mdns.MDnsProtocol is aioice.mdns.MDnsProtocol
assert aioice.ice.mdns.create_mdns_hostname().endswith(".local")
import calendar, dns.message, ifaddr, importlib.metadata, urllib.request
assert calendar.timegm((1970, 1, 2, 0, 0, 0)) == 86400
query = dns.message.make_query("peer.local", "A")
assert dns.message.from_wire(query.to_wire()).question == query.question
assert any(adapter.ips for adapter in ifaddr.get_adapters())
assert importlib.metadata.version("aiortc") == aiortc_version
assert urllib.request.Request("http://peer.invalid/x").host == "peer.invalid"
names = ("dns.message", "ifaddr", "importlib.metadata", "urllib.request", "calendar")
assert "_LazyModule" not in {type(sys.modules[name]).__name__ for name in names}

# PyAV and aiortc's media tracks, codecs, RTP sender and receiver: never loaded for aiortc;
# media fails clearly; the program's own `import av` is PyAV, its `import aiortc.codecs`
# aiortc's codecs, its `import aiortc.mediastreams` aiortc's media tracks.
# aiortc's statistics likewise: getStats fails clearly, the program's `import aiortc.stats` works.
media = ("av", "aiortc.mediastreams", "aiortc.codecs", "aiortc.rtcrtpreceiver",
         "aiortc.rtcrtpsender", "aiortc.rtcrtptransceiver", "aiortc.events",
         "aiortc.jitterbuffer", "aiortc.rate", "aiortc.stats", "aiortc.rtp")
assert not [name for name in sys.modules if name.startswith(media)], sorted(sys.modules)
import asyncio
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.rtcpeerconnection import CODECS, RTCRtpSender

async def stats():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.getStats()
    finally:
        await pc.close()

for use in (AudioStreamTrack, lambda: CODECS["audio"], lambda: RTCRtpSender("audio", None),
            lambda: asyncio.run(stats())):
    try:
        use()
    except RuntimeError as exc:
        assert "mpc-net imports aiortc without " in str(exc), exc
        assert "which its data channels never use" in str(exc), exc
    else:
        raise AssertionError(f"a stand-in worked: {use}")
import aiortc.stats
assert "RTCStatsReport" in repr(type(aiortc.stats.RTCStatsReport()))
import aiortc.mediastreams
assert aiortc.mediastreams.AudioStreamTrack is not AudioStreamTrack
assert aiortc.mediastreams.AudioStreamTrack().kind == "audio"
import av
assert av.AudioFrame(format="s16", layout="mono", samples=4)
import aiortc.codecs
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
assert aiortc.codecs.CODECS is not CODECS and [c.mimeType for c in aiortc.codecs.CODECS["audio"]]
opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2)
frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
frame.sample_rate, frame.pts = 48000, 0
for plane in frame.planes:
    plane.update(bytes(plane.buffer_size))
payloads, _ = get_encoder(opus).encode(frame)
assert payloads and all(isinstance(p, bytes) for p in payloads)

# SRTP: aiortc's DTLS transport offers the profiles that libsrtp has, as without mpc-net; the
# program's own `import pylibsrtp` is libsrtp, and protects and unprotects.
import aiortc.rtcdtlstransport as dtls
assert type(dtls.pylibsrtp).__name__ == "_SrtpStandIn"
import pylibsrtp
assert pylibsrtp is not dtls.pylibsrtp
assert {n: getattr(dtls.Policy, n) for n in dir(pylibsrtp.Policy) if n.isupper()} == {
    n: getattr(pylibsrtp.Policy, n) for n in dir(pylibsrtp.Policy) if n.isupper()}
for profile in dtls.SRTP_PROFILES:  # all that aiortc knows, so none left out here either
    pylibsrtp.Policy(srtp_profile=profile.libsrtp_profile)
assert len(dtls.SRTP_PROFILES) == 3
key = bytes(range(30))
rtp = b"\\x80\\x60\\x00\\x01" + bytes(8) + b"payload"
sender = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
receiver = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_INBOUND))
assert receiver.unprotect(sender.protect(rtp)) == rtp

# RTP and RTCP: aiortc's DTLS transport tells them apart as aiortc.rtp does, never parses them;
# RTP senders and receivers (stand-ins themselves) cannot configure its header extensions; the
# program's own `import aiortc.rtp` parses RTP.
assert type(dtls.rtp).__name__ == "_RtpStandIn"
import aiortc.rtp
assert aiortc.rtp is not dtls.rtp
for packet in [b"", b"\\x80", *(bytes([0x80, second]) for second in range(256))]:
    assert dtls.is_rtcp(packet) == aiortc.rtp.is_rtcp(packet), packet
try:
    dtls.rtp.HeaderExtensionsMap().configure(None)
except RuntimeError as exc:
    assert "mpc-net imports aiortc without aiortc.rtp" in str(exc), exc
else:
    raise AssertionError("the header extensions stand-in was configured")
assert aiortc.rtp.RtpPacket.parse(rtp).payload == b"payload"
"""


def test_what_aioice_imports_but_a_connection_rarely_needs_loads_on_first_use() -> None:
    # aioice.mdns with dnspython (mDNS candidates only), ifaddr (only without --local-address),
    # importlib.metadata (websockets' version) and urllib.request (websockets' proxy lookup, only
    # where a proxy may be configured), calendar (pyOpenSSL's X509Store.set_time) and email.utils
    # (cryptography's RFC822Name): not loaded by importing aiortc and websockets, and whole when
    # used; PyAV and aiortc's codecs not at all. Fails if one of them starts using these at
    # import.
    program = f"aiortc_version = {aiortc.__version__!r}\n{_DEFERRED}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, f"{VERSIONS}: {done.stderr}"



# Names in RFC 4514 text: escapes, hex values, multi-valued and dotted attributes, and failures.
_NAMES = [r"CN=a\,b+O=#0403616263,L=é,1.2.3.4=x\ ", r"CN=a\2Cb", "CN=,O=x", "CN=a b",
          r"CN=\ a\ ", "CN=a b ,O=x", "CN=#zz"]
_PARSE = """
import sys
if sys.argv[1] == "party":
    import mpc_net.native.peer, mpc_net.native.signaling
import re
import cryptography.x509 as x509
parser = sys.modules["cryptography.x509.name"]._RFC4514NameParser
assert re.compile.__module__ == "re", "lean_imports left re.compile replaced"
print(type(parser._STRING_RE).__name__)
for text in sys.argv[2:]:
    try:
        print(repr(x509.Name.from_rfc4514_string(text)))
    except ValueError as exc:
        print("ValueError", exc)
"""


def party_and_plain(script: str, *args: str) -> tuple[str, str]:
    """What `script` prints given "party" (it imports what a party does) and given "plain" (a
    process without mpc-net)."""
    party, plain = (subprocess.run([sys.executable, "-c", script, how, *args], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60)
                    for how in ("party", "plain"))
    assert party.returncode == plain.returncode == 0, f"{VERSIONS}: {party.stderr}{plain.stderr}"
    return party.stdout, plain.stdout


def test_x509_names_parse_the_same_with_their_patterns_compiled_on_first_use() -> None:
    # After a party's imports, cryptography.x509.name's patterns compile when first used, and
    # parse as those compiled at import (a process without mpc-net) do. Fails if the module
    # starts using one of them other than through its methods, or no longer has them.
    party, plain = party_and_plain(_PARSE, *_NAMES)
    kind, *parsed = party.splitlines()
    assert (kind, plain.splitlines()[0]) == ("_LazyPattern", "Pattern")
    assert parsed == plain.splitlines()[1:]
    assert len(parsed) == len(_NAMES) and sum(line.startswith("ValueError") for line in parsed) == 3


# (aiortc's patterns take no IPv6 literal.)
_URIS = ["stun:stun.example:3478", "stun:[2001:db8::1]", "turn:turn.example?transport=tcp",
         "turns:turn.example:5349", "stun:host:99999x", "turn:", "http://x"]
_PARSE_URIS = """
import sys
if sys.argv[1] == "party":
    import mpc_net.native.peer, mpc_net.native.signaling
import aiortc.rtcicetransport as ice
print(type(ice.STUN_REGEX).__name__, type(ice.TURN_REGEX).__name__)
for uri in sys.argv[2:]:
    try:
        print(ice.parse_stun_turn_uri(uri))
    except ValueError as exc:
        print("ValueError", exc)
"""


def test_stun_and_turn_urls_parse_the_same_with_their_patterns_compiled_on_first_use() -> None:
    # As the X.509 names above, for aiortc's ICE transport (used only with --ice).
    party, plain = party_and_plain(_PARSE_URIS, *_URIS)
    kinds, *parsed = party.splitlines()
    assert (kinds, plain.splitlines()[0]) == ("_LazyPattern _LazyPattern", "Pattern Pattern")
    assert parsed == plain.splitlines()[1:] and len(parsed) == len(_URIS)
    assert sum(line.startswith("ValueError") for line in parsed) == 4

_RTP_TO_A_DATA_CHANNEL = """
import asyncio
import mpc_net.native.peer
from aiortc import RTCConfiguration, RTCPeerConnection

async def main():
    a, b = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    channels = [pc.createDataChannel("mpc-net", negotiated=True, id=0) for pc in (a, b)]
    received = asyncio.Queue()
    channels[1].on("message", received.put_nowait)
    opened = asyncio.Event()
    channels[0].on("open", opened.set)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 20)
    channels[0].send(b"before")
    assert await asyncio.wait_for(received.get(), 20) == b"before"
    session, refused = b.sctp.transport._rx_srtp, []
    assert type(session).__name__ == "_SrtpSession"
    for name in ("unprotect", "unprotect_rtcp"):
        def recorded(data, method=getattr(session, name), name=name):
            try:
                return method(data)
            except Exception as exc:
                refused.append((name, type(exc).__name__))
                raise
        setattr(session, name, recorded)
    ice = a.sctp.transport.transport
    for packet in (b"\\x80\\x60" + bytes(22), b"\\x80\\xc8" + bytes(26)):  # RTP, RTCP SR
        await ice._send(packet)
    channels[0].send(b"after")
    assert await asyncio.wait_for(received.get(), 20) == b"after"
    assert refused == [("unprotect", "_SrtpError"), ("unprotect_rtcp", "_SrtpError")], refused
    assert a.connectionState == b.connectionState == "connected"
    await asyncio.gather(a.close(), b.close())

asyncio.run(main())
"""


def test_rtp_and_rtcp_sent_to_a_party_are_dropped_and_its_channel_goes_on() -> None:
    # aiortc's DTLS transport keys the SRTP stand-in once connected; an RTP or RTCP packet (only
    # an authenticated peer can send one inside the DTLS session's 5-tuple) is refused as one
    # that does not authenticate, and dropped, as with libsrtp's keys.
    done = subprocess.run([sys.executable, "-c", _RTP_TO_A_DATA_CHANNEL], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, f"{VERSIONS}: {done.stderr}"


# pyOpenSSL's deprecated functions, methods and class (made, subclassed, made wrongly).
_DEPRECATIONS = """
import sys
if sys.argv[1] == "party":
    import mpc_net.native.peer, mpc_net.native.signaling
    assert "typing_extensions" not in sys.modules
import warnings
from OpenSSL import SSL, crypto
warnings.simplefilter("always")
uses = [lambda: crypto.get_elliptic_curves(), lambda: crypto.X509().set_version(2),
        lambda: crypto.X509Name(crypto.X509().get_subject()),
        lambda: type("Sub", (crypto.X509Name,), {}), lambda: crypto.X509Name(),
        lambda: SSL.Context(SSL.TLS_METHOD).set_passwd_cb(lambda *args: b"")]
for use in uses:
    with warnings.catch_warnings(record=True) as caught:
        try:
            use()
        except TypeError as exc:
            print("TypeError", exc)
    for w in caught:
        print(w.category.__name__, w.message, w.filename, w.lineno)
print(crypto.X509Name.__deprecated__, crypto.get_elliptic_curves.__deprecated__,
      crypto.get_elliptic_curves.__name__, crypto.X509.set_version.__doc__ is not None)
if sys.argv[1] == "party":
    import typing_extensions
    assert typing_extensions.deprecated is not crypto.deprecated
    assert type(sys.modules["typing_extensions"]).__name__ == "module"
"""


def test_pyopenssl_deprecations_warn_as_with_typing_extensions() -> None:
    # After a party's imports, pyOpenSSL's deprecated names (decorated with mpc-net's stand-in
    # for typing_extensions.deprecated) warn as in a process without mpc-net: the same warnings,
    # from the same lines; the program's own `import typing_extensions` is the module itself.
    party, plain = party_and_plain(_DEPRECATIONS)
    assert party == plain
    assert party.count("DeprecationWarning") == 7, party


_SSH = """
import sys
import mpc_net.native.identity, mpc_net.native.peer, mpc_net.native.signaling
ssh_name = "cryptography.hazmat.primitives.serialization.ssh"
assert ssh_name not in sys.modules, "serialization's SSH formats were loaded"
assert not [n for n in sys.modules if ".ciphers" in n or n == "bcrypt"], sorted(sys.modules)
import warnings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import SSHCertificateBuilder, load_ssh_public_key
ssh = sys.modules[ssh_name]
assert all(getattr(serialization, name) is getattr(ssh, name)
           for name in serialization.__all__ if hasattr(ssh, name))
key = Ed25519PrivateKey.generate()
public = key.public_key()
text = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
assert load_ssh_public_key(text) == public
private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
assert serialization.load_ssh_private_key(private, None).public_key() == public
certificate = (SSHCertificateBuilder().public_key(public).serial(1).key_id(b"k")
               .type(serialization.SSHCertificateType.USER).valid_principals([b"p"])
               .valid_after(0).valid_before(2**32).sign(key))
identity = serialization.load_ssh_public_identity(certificate.public_bytes())
assert isinstance(identity, serialization.SSHCertificate) and identity.key_id == b"k"
try:
    serialization.load_ssh_nothing
except AttributeError as exc:
    assert "load_ssh_nothing" in str(exc), exc
else:
    raise AssertionError("serialization made up a name")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    serialization.load_pem_parameters
assert [w.category.__name__ for w in caught] == ["CryptographyDeprecationWarning"], caught
"""


def test_ssh_formats_load_when_first_used() -> None:
    # cryptography's serialization re-exports its SSH formats, which a party never uses: after
    # a party's imports they (and cryptography's ciphers) are not loaded, and each of their
    # names is cryptography's own when first read, whether by name or as an attribute.
    done = subprocess.run([sys.executable, "-c", _SSH], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, f"{VERSIONS}: {done.stderr}"


_DATACLASSES = """
import dataclasses, inspect, re, sys
if sys.argv[1] == "party":
    import mpc_net.native.peer, mpc_net.native.signaling
from mpc_net.rtc.lean import LAZY_DATACLASS_MODULES
import aiortc.rtcrtpparameters as p
import websockets.proxy
print(type(vars(p.RTCRtpCodecCapability)["__init__"]).__name__)
# First uses of each kind, before anything else reads the classes: a subclass that is no
# dataclass made first, a dataclass subclass before its base, a match statement, equality.
print(repr(p.RTCRtpDecodingParameters(ssrc=1, payloadType=96)))
print(repr(p.RTCRtpReceiveParameters(muxId="m")))
match p.RTCRtcpFeedback("nack", "pli"):
    case p.RTCRtcpFeedback(kind, value):
        print("matched", kind, value)
print(p.RTCRtpRtxParameters(5) == p.RTCRtpRtxParameters(5), p.RTCRtpRtxParameters(5) != 5)
codec = p.RTCRtpCodecParameters("audio/opus", 48000, 2)
print(str(codec), repr(dataclasses.replace(codec, payloadType=111)), dataclasses.asdict(codec))
print(websockets.proxy.Proxy.__hash__, dataclasses.fields(websockets.proxy.Proxy)[0].name)
for name in LAZY_DATACLASS_MODULES:
    module = sys.modules[name]
    for cls in sorted(vars(module).values(), key=str):
        if isinstance(cls, type) and cls.__module__ == name and dataclasses.is_dataclass(cls):
            described = (cls, inspect.signature(cls), cls.__doc__, cls.__dataclass_params__,
                         cls.__match_args__, cls.__hash__, dataclasses.fields(cls),
                         sorted(n for n in vars(cls) if n.startswith("__")))
            print(re.sub(" at 0x[0-9a-f]+", "", repr(described)))
"""


def test_dataclasses_made_when_first_used_are_as_those_made_at_import() -> None:
    # After a party's imports, the dataclasses of LAZY_DATACLASS_MODULES are generated when
    # first used, and then are as those generated at import (a process without mpc-net).
    party, plain = party_and_plain(_DATACLASSES)
    kind, *made = party.splitlines()
    assert (kind, plain.splitlines()[0]) == ("_Ungenerated", "function")
    assert made == plain.splitlines()[1:]
    assert len(made) > 20
