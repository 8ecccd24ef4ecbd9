"""Identities, rosters and the channel-binding handshake: the pure rules, the handshake over
transports, and refusals between real parties."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import struct
import subprocess
import sys
import time

import pytest
from seats import LaxRoomServerProcess
from test_transport import RecordingProtocol

from mpc_net.auth import (
    AuthError,
    ChannelView,
    Hello,
    Roster,
    RosterError,
    decode_public_key,
    encode_public_key,
    fingerprint_digest,
    program_hash,
    short_hash,
)
from mpc_net.handshake import Refused, authenticate
from mpc_net.native.identity import FileIdentity, verify
from mpc_net.records import RecordType, decode, encode
from mpc_net.sdp import fingerprints
from mpc_net.transport import DataChannelTransport

from helpers import (
    DEMOS,
    ROOT,
    RoomServerProcess,
    make_credentials,
    mpc_net,
    mpyc_tcp,
    program_lines,
    start_parties,
)

# -- pure rules -------------------------------------------------------------------------------


def test_public_key_text_round_trip_and_rejects() -> None:
    raw = bytes(range(32))
    text = encode_public_key(raw)
    assert text.startswith("ed25519:") and decode_public_key(text) == raw
    for bad in ["ed25519:", "ed25519:!!!", "rsa:AAAA", text[:-2], text + "A", None]:
        with pytest.raises(RosterError):
            decode_public_key(bad)


def test_roster_round_trip_and_session_id() -> None:
    keys = [bytes([i]) * 32 for i in range(3)]
    roster = Roster.of(keys, ["alice", "bob", ""])
    again = Roster.from_json(roster.to_json())
    assert again == roster and again.session_id == roster.session_id
    # The session id depends on the content, not on the file's layout.
    compact = roster.to_json().replace("\n", "").replace("  ", "")
    assert Roster.from_json(compact).session_id == roster.session_id
    assert Roster.of(keys).session_id != roster.session_id  # names are part of the roster
    assert Roster.of(keys[::-1], ["", "bob", "alice"]).session_id != roster.session_id
    assert roster.label(0) == "party 0 (alice)" and roster.label(2) == "party 2"


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "not an mpc-net roster"),
    ('{"mpc-net-roster": 2, "parties": []}', "not an mpc-net roster"),
    ('{"mpc-net-roster": 1, "parties": []}', "at least one party"),
    ('{"mpc-net-roster": 1, "parties": [1]}', "must be a list"),
    ('{"mpc-net-roster": 1, "parties": [{"key": "x"}]}', "not an mpc-net public key"),
    ("{", "not JSON"),
])
def test_bad_rosters(text: str, message: str) -> None:
    with pytest.raises(RosterError, match=message):
        Roster.from_json(text)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(RosterError, match="parties 0 and 2 have the same key"):
        Roster.of([b"a" * 32, b"b" * 32, b"a" * 32])


# -- the handshake over two transports wired back to back -------------------------------------


class Wire:
    """One direction of an in-memory data channel: what one side sends, the other receives."""

    def __init__(self) -> None:
        self.readyState = "open"
        self.bufferedAmount = 0
        self.bufferedAmountLowThreshold = 0
        self.peer: DataChannelTransport | None = None
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        asyncio.get_running_loop().call_soon(self.peer.on_message, data)

    def close(self) -> None:
        self.readyState = "closed"


def wired_pair() -> tuple[DataChannelTransport, DataChannelTransport, Wire, Wire]:
    wires = Wire(), Wire()
    ends = [DataChannelTransport(w, 1 - i, max_message_size=1024, on_lost=lambda e: None)
            for i, w in enumerate(wires)]
    wires[0].peer, wires[1].peer = ends[1], ends[0]
    return ends[0], ends[1], wires[0], wires[1]


FP = {0: "sha-256 AA:00", 1: "sha-256 BB:11", "middle": "sha-256 EE:99"}


def view(roster: Roster, pid: int, *, local: str | None = None,
         remote: str | None = None) -> ChannelView:
    return ChannelView(roster, "room", pid, 1 - pid, local or FP[pid], remote or FP[1 - pid])


async def handshake(views: tuple[ChannelView, ChannelView],
                    identities: tuple[FileIdentity, FileIdentity]):
    a, b, wire_a, wire_b = wired_pair()
    results = await asyncio.gather(authenticate(a, views[0], identities[0], verify),
                                   authenticate(b, views[1], identities[1], verify),
                                   return_exceptions=True)
    for t in (a, b):
        t.abort()
    return results, wire_a, wire_b


@pytest.fixture
def parties() -> tuple[tuple[FileIdentity, FileIdentity], Roster]:
    identities = FileIdentity.generate(), FileIdentity.generate()
    return identities, Roster.of([i.public_key for i in identities])


async def test_handshake_succeeds_between_the_roster_parties(parties) -> None:
    identities, roster = parties
    results, wire_a, _ = await handshake((view(roster, 0), view(roster, 1)), identities)
    assert all(isinstance(r, Hello) for r in results), results
    assert [decode(m)[0] for m in wire_a.sent] == [RecordType.HELLO, RecordType.AUTH,
                                                   RecordType.RESUME]


class FlightWire(Wire):
    """A wire that holds what is sent until the test delivers it: one delivery is one flight
    (half a round trip), whatever the machine's speed."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.pending.append(data)

    def deliver(self) -> None:
        pending, self.pending = self.pending, []
        for data in pending:
            self.peer.on_message(data)


async def test_the_handshake_takes_one_round_trip(parties) -> None:
    """Both sides send HELLO and AUTH in the first flight and RESUME in the second: linked
    after two flights (version 3 took three, for its nonces)."""
    identities, roster = parties
    wires = FlightWire(), FlightWire()
    ends = [DataChannelTransport(w, 1 - i, max_message_size=1024, on_lost=lambda e: None)
            for i, w in enumerate(wires)]
    wires[0].peer, wires[1].peer = ends[1], ends[0]
    runs = [asyncio.ensure_future(authenticate(ends[i], view(roster, i), identities[i], verify))
            for i in (0, 1)]
    flights = 0
    while not all(run.done() for run in runs) and flights < 5:
        for _ in range(10):  # each side does all it can without news from the other
            await asyncio.sleep(0.01)
        if any(w.pending for w in wires):
            for w in wires:
                w.deliver()
            flights += 1
    assert all(isinstance(run.result(), Hello) for run in runs)
    assert flights == 2 and all(t.linked for t in ends)
    for t in ends:
        t.abort()


async def test_key_not_in_the_roster_is_refused(parties) -> None:
    (alice, _), roster = parties
    stranger = FileIdentity.generate()
    results, _, _ = await handshake((view(roster, 0), view(roster, 1)), (alice, stranger))
    assert "its key is not in the roster" in str(results[0])
    assert "refused" in str(results[1])


async def test_another_partys_key_is_refused() -> None:
    identities = [FileIdentity.generate() for _ in range(3)]
    roster = Roster.of([i.public_key for i in identities])
    results, _, _ = await handshake((view(roster, 0), view(roster, 1)),
                                    (identities[0], identities[2]))
    assert "it holds the key of party 2, not of party 1" in str(results[0])


async def test_different_rosters_are_refused(parties) -> None:
    identities, roster = parties
    other = Roster.of(list(roster.keys), ["renamed", ""])
    results, _, _ = await handshake((view(roster, 0), view(other, 1)), identities)
    assert all("the rosters differ" in str(r) for r in results)


async def test_parties_must_agree_on_mpycs_portable_mode(parties) -> None:
    identities, roster = parties
    native_only = dataclasses.replace(view(roster, 1), mix32_64bit=False)
    results, _, _ = await handshake((view(roster, 0), native_only), identities)
    assert "it runs MPyC without --mix32-64bit and we run with" in str(results[0])
    assert "it runs MPyC with --mix32-64bit and we run without" in str(results[1])
    both = (native_only, dataclasses.replace(view(roster, 0), mix32_64bit=False))
    results, _, _ = await handshake(both[::-1], identities)
    assert all(isinstance(r, Hello) for r in results), results


async def test_swapped_fingerprints_are_refused(parties) -> None:
    """What each side sees when something in the middle terminates DTLS on both sides."""
    identities, roster = parties
    results, _, _ = await handshake(
        (view(roster, 0, remote=FP["middle"]), view(roster, 1, remote=FP["middle"])), identities)
    assert all(isinstance(r, AuthError) for r in results)
    assert "fingerprint mismatch" in str(results[0])


def next_connection(roster: Roster, pid: int) -> ChannelView:
    """Party `pid`'s view of a later connection: both certificates are new, as every peer
    connection makes its own (test_a_peer_connection_has_a_certificate_of_its_own)."""
    return view(roster, pid, local=FP[pid] + ":02", remote=FP[1 - pid] + ":02")


def with_fingerprints(hello_body: bytes, seen_by: ChannelView) -> bytes:
    """A recorded HELLO made to claim the fingerprints the receiver now sees."""
    hello = Hello.decode(hello_body)
    return dataclasses.replace(
        hello, own_fingerprints=fingerprint_digest(seen_by.remote_fingerprints),
        peer_fingerprints=fingerprint_digest(seen_by.local_fingerprints)).encode()


async def play_first_flight(peer: DataChannelTransport, records: list[tuple[RecordType, bytes]]):
    """Send a peer's records without waiting, and return what it gets back until a REFUSED."""
    for kind, body in records:
        peer.send_handshake(kind, body)
    got = []
    while not got or got[-1][0] is not RecordType.REFUSED:
        got.append(await asyncio.wait_for(peer.receive_handshake(), 2))
    return got


async def test_a_peer_connection_has_a_certificate_of_its_own() -> None:
    """What makes a statement unusable on another connection (SECURITY.md, "The handshake"):
    every peer connection, native or in a browser, makes a new DTLS certificate."""
    from mpc_net.native.peer import NativePeerConnection
    pcs = [NativePeerConnection([], host_addresses=["127.0.0.1"]) for _ in range(3)]
    seen = {fingerprints((await pc.create_offer()).sdp) for pc in pcs}
    await asyncio.gather(*(pc.close() for pc in pcs))
    assert len(seen) == 3 and all(seen)


@pytest.mark.parametrize("rewrite", [False, True], ids=["as-recorded", "fingerprints-rewritten"])
async def test_a_handshake_replayed_from_another_connection_is_refused(parties,
                                                                       rewrite: bool) -> None:
    """Bob's HELLO and AUTH of one connection, replayed to Alice on the next one, whose
    certificates are new: as recorded, its HELLO names the old fingerprints; made to name the
    new ones, Bob's signature (over the old ones) fails. Nothing it sends after reaches MPyC."""
    identities, roster = parties
    alice, _ = identities
    _, _, bob_wire = await handshake((view(roster, 0), view(roster, 1)), identities)
    recorded = [(kind, bytes(body)) for kind, body in map(decode, bob_wire.sent[:3])]
    assert [kind for kind, _ in recorded] == [RecordType.HELLO, RecordType.AUTH,
                                              RecordType.RESUME]

    alice_end, replayer, _, _ = wired_pair()
    protocol = RecordingProtocol()
    alice_end.attach(protocol)
    later = next_connection(roster, 0)
    if rewrite:
        recorded[0] = (RecordType.HELLO, with_fingerprints(recorded[0][1], later))
    replayed = [*recorded, (RecordType.DATA, b"\x00" * 12 + b"forged!!")]
    results = await asyncio.gather(authenticate(alice_end, later, alice, verify),
                                   play_first_flight(replayer, replayed),
                                   return_exceptions=True)
    expected = "bad signature" if rewrite else "fingerprint mismatch"
    assert isinstance(results[0], AuthError) and expected in str(results[0]), results
    assert results[1][-1][0] is RecordType.REFUSED  # told why
    assert not alice_end.linked and alice_end.received == 0 and protocol.events == ["made"]
    for t in (alice_end, replayer):
        t.abort()


async def test_a_forged_auth_is_refused_and_its_stream_never_arrives(parties) -> None:
    """A stranger sends a first flight that names the right key and fingerprints, a signature
    of its own key, and the stream an authenticated peer would start after its RESUME: the
    signature fails, and what came after the RESUME is never counted, answered or passed on."""
    (alice, _), roster = parties
    stranger = FileIdentity.generate()
    alice_end, forger, alice_wire, _ = wired_pair()
    protocol = RecordingProtocol()
    alice_end.attach(protocol)
    bob_view = view(roster, 1)
    flight = [(RecordType.HELLO, bob_view.hello(roster.keys[1]).encode()),
              (RecordType.AUTH, await stranger.sign(bob_view.statement(1, bob_view.program_hash))),
              (RecordType.RESUME, bytes(8)),
              (RecordType.DATA, b"\x00" * 12 + b"forged!!"), (RecordType.PING, bytes(8)),
              (RecordType.GOODBYE, b"")]
    results = await asyncio.gather(authenticate(alice_end, view(roster, 0), alice, verify),
                                   play_first_flight(forger, flight), return_exceptions=True)
    assert isinstance(results[0], AuthError) and "bad signature" in str(results[0]), results
    assert not alice_end.linked and alice_end.received == 0 and protocol.events == ["made"]
    sent = [decode(m)[0] for m in alice_wire.sent]  # what Alice sent the forger
    assert RecordType.PONG not in sent and RecordType.DATA not in sent
    assert sent[-1] is RecordType.REFUSED
    for t in (alice_end, forger):
        t.abort()


async def test_a_resume_at_a_position_never_sent_is_refused(parties) -> None:
    """The roster's party 1 itself, on a first channel, claims to have 10 bytes of a stream
    nobody has sent yet: the attempt fails, and party 0 says why."""
    identities, roster = parties
    a, b, wire_a, wire_b = wired_pair()
    liar = wire_b.send

    def send(data: bytes) -> None:  # party 1's RESUME claims 10 bytes
        kind, _ = decode(data)
        liar(encode(RecordType.RESUME, (10).to_bytes(8, "big")) if kind is RecordType.RESUME
             else data)

    wire_b.send = send
    results = await asyncio.gather(authenticate(a, view(roster, 0), identities[0], verify),
                                   authenticate(b, view(roster, 1), identities[1], verify),
                                   return_exceptions=True)
    assert "cannot resume our stream" in str(results[0]), results
    assert not a.linked and a.get_write_buffer_size() == 0
    assert decode(wire_a.sent[-1])[0] is RecordType.REFUSED
    for t in (a, b):
        t.abort()


async def test_a_peer_of_the_previous_handshake_version_is_told_unsupported_version(
        parties) -> None:
    """A version 3 peer (with its nonce round trip): we refuse naming both versions, and so does
    the REFUSED it gets; its own refusal of our HELLO comes after its HELLO, so ours is what we
    report."""
    (alice, _), roster = parties
    ours, old_peer, _, to_ours = wired_pair()
    v3 = struct.pack(">B32sH32s32s32s32s?32s", 3, roster.session_id, 1, bytes(32),
                     roster.keys[1], bytes(32), bytes(32), True, bytes(32))
    to_ours.send(encode(RecordType.HELLO, v3))
    to_ours.send(encode(RecordType.REFUSED, b"unsupported-version: it speaks handshake version "
                                            b"4, we speak version 3"))
    with pytest.raises(AuthError) as refused:
        await authenticate(ours, view(roster, 0), alice, verify)
    message = "unsupported-version: it speaks handshake version 3, we speak version 4"
    assert message in str(refused.value)
    kind, body = await old_peer.receive_handshake()
    assert (kind, body[0]) == (RecordType.HELLO, 4)
    assert (await old_peer.receive_handshake())[0] is RecordType.AUTH  # our first flight
    kind, body = await old_peer.receive_handshake()
    assert kind is RecordType.REFUSED and message in body.decode()
    # A newer peer is told the same way.
    newer = view(roster, 1).hello(roster.keys[1]).encode()
    with pytest.raises(AuthError, match="it speaks handshake version 5, we speak version 4"):
        Hello.decode(bytes([5]) + newer[1:])
    for t in (ours, old_peer):
        t.abort()


@pytest.mark.parametrize("stray", [RecordType.DATA, RecordType.GOODBYE, RecordType.ACK])
async def test_a_stranger_that_writes_before_the_handshake_is_refused(parties,
                                                                      stray: RecordType) -> None:
    """What a room server that answers a repair offer itself can send: a record of the stream
    first, then REFUSED. The attempt ends at the first record, and nothing is kept."""
    (alice, _), roster = parties
    ours, stranger, _, to_ours = wired_pair()
    body = {RecordType.DATA: b"\x00" * 12 + b"forged!!", RecordType.GOODBYE: b"",
            RecordType.ACK: (20).to_bytes(8, "big")}[stray]
    to_ours.send(encode(stray, body))
    to_ours.send(encode(RecordType.REFUSED, b"go away"))
    with pytest.raises(AuthError, match=f"it sent {stray.name} where HELLO belongs"):
        await authenticate(ours, view(roster, 0), alice, verify)
    assert ours.received == 0 and not ours.linked
    kinds = [kind for kind, _ in [await stranger.receive_handshake() for _ in range(3)]]
    # Our first flight, then why; nothing else.
    assert kinds == [RecordType.HELLO, RecordType.AUTH, RecordType.REFUSED]
    for t in (ours, stranger):
        t.abort()


async def test_a_refusal_is_shown_with_its_control_characters_escaped(parties) -> None:
    (alice, _), roster = parties
    ours, _, _, to_ours = wired_pair()
    to_ours.send(encode(RecordType.REFUSED, b"\x1b[2J\x1b]0;owned\x07\nparty 1: all is well"))
    with pytest.raises(Refused) as refused:
        await authenticate(ours, view(roster, 0), alice, verify)
    text = str(refused.value)
    assert "\x1b" not in text and "\n" not in text and "\x07" not in text
    assert "\\x1b[2J\\x1b]0;owned\\x07\\nparty 1: all is well" in text
    ours.abort()


def test_the_program_hash_is_signed(parties) -> None:
    _, roster = parties
    alice, bob = (dataclasses.replace(view(roster, i), program_hash=PROGRAM_A) for i in (0, 1))
    mine, theirs = alice.hello(roster.keys[0]), bob.hello(roster.keys[1])
    assert mine.program_hash == theirs.program_hash == PROGRAM_A
    other = dataclasses.replace(theirs, program_hash=PROGRAM_B)
    assert Hello.decode(other.encode()) == other
    assert alice.statement(1, PROGRAM_A) == bob.statement(1, PROGRAM_A)  # what 1 signs
    assert alice.statement(1, PROGRAM_A) != alice.statement(1, PROGRAM_B)


# -- every party runs the same program --------------------------------------------------------

PROGRAM_A = program_hash(b"print('a')\n")
PROGRAM_B = program_hash(b"print('b')\n")


def test_the_program_hash_normalises_line_endings_bom_and_final_newlines() -> None:
    """What editors and transfers change does not count; anything else in the text does."""
    import hashlib

    lf = b"from mpyc.runtime import mpc\n\nx = 1  # one\n"
    assert program_hash(lf) == hashlib.sha256(lf).digest()  # what `sha256sum` prints
    for same in (lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r"), b"\xef\xbb\xbf" + lf,
                 lf.rstrip(b"\n"), lf + b"\n\n", lf.replace(b"\n", b"\r\n") + b"\r\n"):
        assert program_hash(same) == program_hash(lf), same
    for other in (lf.replace(b"one", b"two"), lf.replace(b"  #", b" #"), b" " + lf,
                  lf.replace(b"\n\n", b"\n"), lf + b" \n", lf.replace(b"\n", b"\n\xef\xbb\xbf", 1)):
        assert program_hash(other) != program_hash(lf), other
    assert program_hash(b"") == program_hash(b"\n\r\n") == hashlib.sha256(b"").digest()
    assert short_hash(program_hash(lf)) == hashlib.sha256(lf).hexdigest()[:16]


def with_program(v: ChannelView, digest: bytes, allow: bool = False) -> ChannelView:
    return dataclasses.replace(v, program_hash=digest, allow_different_programs=allow)


async def test_parties_with_the_same_program_connect(parties) -> None:
    identities, roster = parties
    results, _, _ = await handshake(
        (with_program(view(roster, 0), PROGRAM_A), with_program(view(roster, 1), PROGRAM_A)),
        identities)
    assert [r.program_hash for r in results] == [PROGRAM_A, PROGRAM_A]


async def test_different_programs_are_refused_naming_both_hashes(parties) -> None:
    identities, roster = parties
    a, b = short_hash(PROGRAM_A), short_hash(PROGRAM_B)
    results, _, _ = await handshake(
        (with_program(view(roster, 0), PROGRAM_A), with_program(view(roster, 1), PROGRAM_B)),
        identities)
    assert all(isinstance(r, AuthError) for r in results), results
    # Each refuses the other's HELLO itself, naming its peer's hash first.
    assert f"program-mismatch: it runs program {b}, we run {a}" in str(results[0])
    assert f"program-mismatch: it runs program {a}, we run {b}" in str(results[1])


async def test_a_party_accepts_another_program_only_by_its_own_choice(parties) -> None:
    identities, roster = parties
    lenient = with_program(view(roster, 0), PROGRAM_A, allow=True)
    strict = with_program(view(roster, 1), PROGRAM_B)
    results, _, _ = await handshake((lenient, strict), identities)
    # The strict party refuses; the lenient one is told so, with both hashes.
    assert "program-mismatch" in str(results[1])
    assert isinstance(results[0], Refused) and "program-mismatch" in str(results[0])
    assert f"it runs program {short_hash(PROGRAM_A)}" in str(results[0])
    # Both agree to differ: the channel stands, and each knows what the other runs.
    both = (lenient, with_program(strict, PROGRAM_B, allow=True))
    results, _, _ = await handshake(both, identities)
    assert [r.program_hash for r in results] == [PROGRAM_B, PROGRAM_A]
    assert lenient.program_difference(results[0]) == (
        f"it runs program {short_hash(PROGRAM_B)}, we run {short_hash(PROGRAM_A)} "
        "(SHA-256 of the program texts)")


class RewritingWire(Wire):
    """A relay that makes a HELLO claim another program hash (the last 32 bytes of HELLO)."""

    def __init__(self, claim: bytes) -> None:
        super().__init__()
        self.claim = claim

    def send(self, data: bytes) -> None:
        kind, body = decode(data)
        if kind is RecordType.HELLO:
            data = encode(kind, bytes(body[:-32]) + self.claim)
        super().send(data)


async def test_a_relay_that_rewrites_the_program_hashes_is_refused(parties) -> None:
    """Party 0 runs program A, party 1 program B; a relay tells each that the other runs its
    own program: both HELLO checks pass, and both signatures, which cover the hashes, fail."""
    identities, roster = parties
    views = [with_program(view(roster, 0), PROGRAM_A), with_program(view(roster, 1), PROGRAM_B)]
    wires = [RewritingWire(PROGRAM_B), RewritingWire(PROGRAM_A)]  # what 0 sends, what 1 sends
    ends = [DataChannelTransport(w, 1 - i, max_message_size=1024, on_lost=lambda e: None)
            for i, w in enumerate(wires)]
    wires[0].peer, wires[1].peer = ends[1], ends[0]
    results = await asyncio.gather(
        *(authenticate(ends[i], views[i], identities[i], verify) for i in (0, 1)),
        return_exceptions=True)
    for t in ends:
        t.abort()
    assert all("bad signature" in str(r) for r in results), results
    # Not vacuous: each got a HELLO with its own program's hash.
    for i, wire in enumerate(wires):
        hello = Hello.decode(bytes(decode(wire.sent[0])[1]))
        assert hello.program_hash == views[1 - i].program_hash


async def test_silent_peer_times_out(parties) -> None:
    (alice, _), roster = parties
    a, _, wire_a, _ = wired_pair()
    with pytest.raises(AuthError, match="within 0.2 s"):
        await authenticate(a, view(roster, 0), alice, verify, timeout=0.2)
    # HELLO and AUTH went out together, without waiting for anything from the peer.
    assert [decode(m)[0] for m in wire_a.sent] == [RecordType.HELLO, RecordType.AUTH]
    a.abort()


# -- key and roster files ---------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path) -> None:
    key = tmp_path / "me.key"
    done = mpc_net("keygen", "--out", str(key))
    assert done.returncode == 0
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert FileIdentity.load(key).public_text == done.stdout.strip()
    again = mpc_net("keygen", "--out", str(key))
    assert again.returncode == 2 and "--force" in again.stderr
    assert FileIdentity.load(key).public_text == done.stdout.strip()  # untouched
    assert mpc_net("keygen", "--out", str(key), "--force").returncode == 0


@pytest.mark.parametrize("planted", ["symbolic link", "dangling symbolic link", "hard link"])
@pytest.mark.parametrize("command", ["keygen", "roster"])
def test_key_and_roster_files_are_never_written_through_a_planted_link(
        tmp_path, command: str, planted: str) -> None:
    """Someone who can put a link where a key or roster goes must not make us write or
    truncate a file of their choosing, not even with --force."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    if planted == "hard link":
        os.link(victim, out)
    else:
        out.symlink_to(victim if planted == "symbolic link" else tmp_path / "nowhere")
    args = (["keygen"] if command == "keygen" else
            ["roster", mpc_net("keygen", "--out", str(tmp_path / "k")).stdout.strip()])
    for force in ([], ["--force"]):
        done = mpc_net(*args, "--out", str(out), *force)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert ("symbolic link" in done.stderr or "hard link" in done.stderr
                or ("exists" in done.stderr and not force)), done.stderr
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "nowhere").exists()


def test_local_mode_keeps_its_throwaway_keys_out_of_the_log_directory(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("party0.key", "party1.key", "roster.json"):
        (logs / name).symlink_to(victim)
    keys_home = tmp_path / "tmp"
    keys_home.mkdir()
    done = mpc_net("run", str(DEMOS / "stats.py"), "-M2", "--log-dir", str(logs),
                   env={**os.environ, "TMPDIR": str(keys_home)})
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert {p.name for p in logs.iterdir()} == {"party0.key", "party1.key", "roster.json",
                                                 "party1.log"}
    assert all((logs / name).is_symlink() for name in ("party0.key", "party1.key", "roster.json"))
    # The keys lived in a directory of their own (mode 0700, made by tempfile) and are gone.
    assert not list(keys_home.iterdir())


def test_roster_command_and_show(tmp_path) -> None:
    keys = [mpc_net("keygen", "--out", str(tmp_path / f"k{i}")).stdout.strip() for i in range(2)]
    roster = tmp_path / "roster.json"
    # Keys as text, named, or read from a key file.
    made = mpc_net("roster", f"alice={keys[0]}", str(tmp_path / "k1"), "--out", str(roster))
    assert made.returncode == 0, made.stderr
    shown = mpc_net("roster", "--show", str(roster))
    assert shown.returncode == 0
    assert f"party 0: {keys[0]} alice" in shown.stdout and f"party 1: {keys[1]}" in shown.stdout
    session = Roster.from_json(roster.read_text()).session_id.hex()
    assert f"session id: {session}" in shown.stdout == made.stdout


def _bad_files(tmp_path) -> dict[str, tuple[list[str], str]]:
    good = make_credentials(tmp_path, 2)
    key, roster = good[0][1], good[0][3]
    loose = tmp_path / "loose.key"
    loose.write_bytes(open(key, "rb").read())
    loose.chmod(0o644)
    truncated = tmp_path / "truncated.key"
    truncated.write_bytes(open(key, "rb").read()[:60])
    truncated.chmod(0o600)
    not_key = tmp_path / "not.key"
    not_key.write_text("hello\n")
    not_key.chmod(0o600)
    cut = tmp_path / "cut.json"
    cut.write_text(open(roster).read()[:50])
    text = open(roster).read()
    first = re.search(r'"key": "([^"]+)"', text).group(1)
    dup = tmp_path / "dup.json"
    dup.write_text(re.sub(r'"key": "[^"]+"', f'"key": "{first}"', text))
    return {
        "missing key": (["--key", str(tmp_path / "nope.key"), "--roster", roster],
                        "does not exist"),
        "key readable by others": (["--key", str(loose), "--roster", roster], "chmod 600"),
        "truncated key": (["--key", str(truncated), "--roster", roster], "not an unencrypted PEM"),
        "not a key": (["--key", str(not_key), "--roster", roster], "not an unencrypted PEM"),
        "missing roster": (["--key", key, "--roster", str(tmp_path / "nope.json")],
                           "does not exist"),
        "truncated roster": (["--key", key, "--roster", str(cut)], "not JSON"),
        "roster is a key": (["--key", key, "--roster", key], "not JSON"),
        "duplicate keys": (["--key", key, "--roster", str(dup)], "have the same key"),
        "roster of another size": (["--key", key, "--roster", roster, "-M3"], "lists 2 parties"),
        "key of another party": (["--key", good[1][1], "--roster", roster], "is party 1's"),
        "no roster": (["--key", key], "needs --key and --roster"),
    }


@pytest.mark.parametrize("case", ["missing key", "key readable by others", "truncated key",
                                  "not a key", "missing roster", "truncated roster",
                                  "roster is a key", "duplicate keys", "roster of another size",
                                  "key of another party", "no roster"])
def test_bad_key_and_roster_files_are_one_line_and_exit_code_2(tmp_path, case: str) -> None:
    options, message = _bad_files(tmp_path)[case]
    parties = "-M3" if "-M3" in options else "-M2"
    options = [o for o in options if o != "-M3"]
    done = mpc_net("run", str(DEMOS / "auction.py"), parties, "-I", "0", "--room", "r",
                   "--signal", "ws://127.0.0.1:9", *options)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


# -- refusals between real parties -------------------------------------------------------------

IMPOSTOR = """
import sys
from mpc_net.native.identity import FileIdentity, load_roster, verify
from mpc_net.mesh import MeshConfig
from mpc_net.native.party import run_party
from mpc_net.native.peer import use_host_addresses
from mpc_net.runtime import mpyc_argv

key, roster, url, room, pid, script = sys.argv[1:]
use_host_addresses(["127.0.0.1"])
config = MeshConfig(signaling_url=url, room=room, pid=int(pid), parties=3,
                    roster=load_roster(roster), identity=FileIdentity.load(key), verify=verify)
sys.exit(run_party(mpyc_argv(script, [], 3, int(pid), config.mix32_64bit), config))
"""


@pytest.fixture
def room_server():
    server = RoomServerProcess()
    yield server
    server.close()


@pytest.fixture
def lax_room_server():
    """One that seats anyone by room name, unchecked: the honest room server keeps strangers
    and other rosters out of a roster's room (tests/test_seats.py), so only a room server that
    lies brings them to the handshake tested here."""
    server = LaxRoomServerProcess()
    yield server
    server.close()


def outcome(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize("who, reason", [
    ("stranger", "its key is not in the roster"),
    ("party 2's key", "it holds the key of party 2, not of party 1"),
])
def test_impostor_as_party_1_is_refused(lax_room_server, tmp_path, who: str,
                                        reason: str) -> None:
    room_server = lax_room_server
    credentials = make_credentials(tmp_path, 3)
    if who == "stranger":
        stranger = tmp_path / "stranger.key"
        assert mpc_net("keygen", "--out", str(stranger)).returncode == 0
        impostor_key = str(stranger)
    else:
        impostor_key = credentials[2][1]
    # Party 0 is honest; party 1 is an impostor that skips mpc-net's own checks, as an attacker
    # would; party 2 stays away, so that party 0 meets the impostor first.
    room = f"impostor-{len(who)}"
    script = DEMOS / "auction.py"
    honest = start_parties(script, 3, room_server.url, room, credentials=credentials, only=[0])
    impostor = subprocess.Popen(
        [sys.executable, "-c", IMPOSTOR, impostor_key, credentials[0][3], room_server.url, room,
         "1", str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, out, err = outcome(honest[0])
    assert code != 0
    assert f"authentication of party 1 failed: {reason}" in err
    assert "Traceback" not in err
    assert "Winner" not in out
    code, out, _ = outcome(impostor)
    assert code != 0 and "Winner" not in out  # the impostor got nothing either


def test_parties_with_different_rosters_are_refused(lax_room_server, tmp_path) -> None:
    room_server = lax_room_server
    credentials = make_credentials(tmp_path, 3)
    renamed = tmp_path / "renamed.json"
    roster = Roster.from_json(open(credentials[2][3]).read())
    renamed.write_text(Roster.of(list(roster.keys), ["", "", "carol"]).to_json())
    credentials[2][3] = str(renamed)
    procs = start_parties(DEMOS / "auction.py", 3, room_server.url, "two-rosters",
                          credentials=credentials, only=[0, 2])
    for proc in procs:
        code, _, err = outcome(proc)
        assert code != 0 and "the rosters differ" in err, err


def test_trusting_the_room_server_works_and_shows_one_code(room_server) -> None:
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, "-M3")
    procs = start_parties(script, 3, room_server.url, "trusting",
                          credentials=[["--trust-room-server"]] * 3)
    codes = set()
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"party {i}: {err}"
        assert program_lines(out) == expected
        assert "WARNING: trusting the keys relayed by the room server" in err
        codes.update(re.findall(r"check code of this run: (\d{4}-\d{4}-\d{4}-\d{4})", err))
    assert len(codes) == 1  # every party holds the same announced roster


def test_a_party_running_another_program_is_refused_and_every_party_stops(room_server,
                                                                            tmp_path) -> None:
    """Party 2 runs a changed copy of the program: it refuses both others, they refuse it, and
    every party ends soon with a non-zero exit, naming both hashes; nobody computes."""
    script = DEMOS / "auction.py"
    changed = tmp_path / "auction.py"
    changed.write_bytes(script.read_bytes() + b"# not quite the same program\n")
    ours, theirs = (short_hash(program_hash(p.read_bytes())) for p in (script, changed))
    credentials = make_credentials(tmp_path, 3)
    started = time.monotonic()
    procs = [*start_parties(script, 3, room_server.url, "two-programs", "--join-timeout", "20",
                            credentials=credentials, only=[0, 1]),
             *start_parties(changed, 3, room_server.url, "two-programs", "--join-timeout", "20",
                            credentials=credentials, only=[2])]
    told = []
    for i, proc in enumerate(procs):
        code, out, err = outcome(proc)
        assert code not in (0, None), f"party {i} went ahead: {err}"
        assert "Traceback" not in err and "Winner" not in out, err
        if i == 2:
            assert f"program-mismatch: it runs program {ours}, we run {theirs}" in err, err
        if re.search(r"authentication of party \d failed: program-mismatch", err):
            told.append(i)
    # Party 2 and whoever met it say why; one that came after the others refused each other
    # and left may only see them go, and gives up at its join timeout.
    assert 2 in told and len(told) >= 2, told
    assert time.monotonic() - started < 50


def test_parties_that_agree_to_differ_run_and_say_so(room_server, tmp_path) -> None:
    script = DEMOS / "auction.py"
    changed = tmp_path / "auction.py"
    changed.write_bytes(script.read_bytes() + b"# a harmless difference\n")
    expected = mpyc_tcp(script, "-M3")
    credentials = make_credentials(tmp_path, 3)
    flag = "--allow-different-programs"
    procs = [*start_parties(script, 3, room_server.url, "agree-to-differ", flag,
                            credentials=credentials, only=[0, 1]),
             *start_parties(changed, 3, room_server.url, "agree-to-differ", flag,
                            credentials=credentials, only=[2])]
    for i, proc in enumerate(procs):
        code, out, err = outcome(proc)
        assert code == 0, f"party {i}: {err}"
        assert program_lines(out) == expected
        others = [0, 1] if i == 2 else [2]
        for j in others:
            assert f"party {i}: party {j} runs another program, as allowed" in err, err
        assert err.count("runs another program, as allowed") == len(others), err
