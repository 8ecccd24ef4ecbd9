"""The mesh: its pure state machine driven with a fake clock (every step the driver would feed
it), the one piece that decides a party is lost (liveness.Outage), and the asyncio driver over a
real room server and real aiortc peer connections in this process."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mpc_net.liveness import ALIVE, Interrupted, Lost, Outage
from mpc_net.mesh import Link, Mesh, MeshConfig, MeshError
from mpc_net.mesh.events import (
    AttemptFailed,
    AttemptStarted,
    Authenticated,
    ChannelDown,
    ChannelOpen,
    CheckComplete,
    Close,
    Fail,
    Joined,
    Lose,
    Offer,
    PeerJoined,
    PeerLeft,
    Refused,
    Repair,
    RepairProblem,
    Report,
    RosterKnown,
    Show,
    Tick,
    Unreachable,
)
from mpc_net.mesh.state import PROGRESS_INTERVAL, MeshState, Timeouts

T = Timeouts(join=300.0, connect=20.0, outage=30.0)


def kinds(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def texts(actions: list) -> list[str]:
    return [a.text for a in kinds(actions, Report)]


def up(state: MeshState, j: int, now: float) -> list:
    """Party j's channel opens and authenticates."""
    actions = state.handle(ChannelOpen(j), now)
    return actions + state.handle(Authenticated(j, f"party {j}", "host -> host"), now)


def built(pid: int = 0, parties: int = 3, timeouts: Timeouts = T) -> MeshState:
    """A mesh that stood (every link up, check code out) and then left the room, at t=5."""
    state = MeshState(pid, parties, "room", 0.0, timeouts, roster_known=True)
    others = [j for j in range(parties) if j != pid]
    state.handle(Joined(tuple(others)), 1.0)
    for j in others:
        if j < pid:
            state.handle(AttemptStarted(j), 2.0)
        up(state, j, 3.0)
    state.handle(CheckComplete(), 4.0)
    assert state.done
    state.connected = True
    state.left_room()
    return state


# -- building the mesh ----------------------------------------------------------------------------

def test_first_connect_the_lower_index_offers_and_the_mesh_stands_with_the_check_code() -> None:
    state = MeshState(1, 3, "room", 0.0, T, roster_known=True)
    assert [k.state for k in state.links.values()] == [Link.ABSENT, Link.ABSENT]
    actions = state.handle(Joined((0, 2)), 1.0)
    assert kinds(actions, Offer) == [Offer(2)]  # to the higher index only; party 0 offers to us
    assert Show(2, Link.CONNECTING) in actions and Show(0, Link.PRESENT) in actions
    actions = state.handle(AttemptStarted(0), 1.5)  # party 0's offer came: we answer
    assert actions == [Show(0, Link.CONNECTING)]
    assert state.handle(ChannelOpen(0), 2.0) == [Show(0, Link.AUTHENTICATING)]
    actions = state.handle(Authenticated(0, "party 0 (alice)", "host -> srflx"), 2.5)
    assert texts(actions) == ["party 1: channel to party 0 (alice) open and authenticated; "
                              "path host -> srflx"]
    assert Show(0, Link.UP) in actions
    up(state, 2, 3.0)
    assert not state.done  # every channel is up, but the check-code exchange is still going
    state.handle(CheckComplete(), 3.5)
    assert state.done


def test_check_code_exchange_held_back_is_said_as_such_at_the_join_timeout() -> None:
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    up(state, 1, 2.0)
    assert state.next_deadline() == PROGRESS_INTERVAL  # nothing timed but the join and progress
    [line] = kinds(state.handle(Tick(), 10.0), Report)
    assert line.text == "waiting for the check-code exchange: 290 s left"
    assert not kinds(state.handle(Tick(), 300.0), Fail)
    [fail] = kinds(state.handle(Tick(), 300.5), Fail)
    assert fail.message == ("the check-code exchange did not finish within 300 s: a party or "
                            "the room server held back its messages")


def test_late_joiners_are_waited_for_with_progress_until_the_join_timeout() -> None:
    state = MeshState(0, 3, "room", 0.0, T, roster_known=True)
    assert state.handle(Joined(()), 0.5) == []
    assert state.next_deadline() == PROGRESS_INTERVAL
    [line] = kinds(state.handle(Tick(), 10.0), Report)
    assert line.progress and line.text == "waiting for parties 1, 2: 290 s left"
    state.handle(PeerJoined(1), 50.0)  # a late joiner gets its offer at once
    assert state.links[1].state is Link.CONNECTING and state.next_deadline() == 60.0
    [line] = kinds(state.handle(Tick(), 60.0), Report)
    assert line.text == "waiting for parties 1, 2: 10 s left"  # party 1's connect deadline
    up(state, 1, 61.0)
    [fail] = kinds(state.handle(Tick(), 300.5), Fail)
    assert fail.message == "parties [2] did not join room 'room' within 300 s"


def test_a_channel_not_up_within_the_connect_timeout_fails_naming_the_party() -> None:
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    assert not kinds(state.handle(Tick(), 21.0), Unreachable)
    assert kinds(state.handle(Tick(), 21.5), Unreachable) == [Unreachable(1)]


def test_refusal_while_connecting_fails_the_mesh_with_the_reason() -> None:
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    state.handle(ChannelOpen(1), 2.0)
    actions = state.handle(Refused(1, "authentication of party 1 failed: bad signature"), 2.5)
    assert actions == [Show(1, Link.REFUSED),
                       Fail("authentication of party 1 failed: bad signature")]


def test_a_channel_lost_while_connecting_gets_a_grace_for_a_refusal_to_win() -> None:
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    state.handle(ChannelOpen(1), 2.0)
    assert state.handle(ChannelDown(1, "the data channel closed", resumable=False), 3.0) == []
    assert state.next_deadline() == 5.0
    [fail] = kinds(state.handle(Tick(), 5.0), Fail)
    assert fail.message == "lost the connection to party 1: the data channel closed"


def test_without_a_roster_offers_wait_for_every_key() -> None:
    state = MeshState(0, 3, "room", 0.0, T, roster_known=False)
    assert not kinds(state.handle(Joined((1,)), 1.0), Offer)
    assert not kinds(state.handle(PeerJoined(2), 2.0), Offer)
    assert kinds(state.handle(RosterKnown(), 2.0), Offer) == [Offer(1), Offer(2)]


# -- a peer that leaves mid-handshake -------------------------------------------------------------

def test_a_peer_that_leaves_mid_handshake_is_waited_for_then_fails_with_what_was_tried() -> None:
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    actions = state.handle(PeerLeft(1, channel_open=False, tried="candidates we offered: host"),
                           4.0)
    assert texts(actions) == ["party 1 left the room before connecting; waiting 20 s for it to "
                              "return"]
    assert Close(1) in actions and state.links[1].state is Link.LEFT
    assert state.next_deadline() == 10.0  # progress first; the deadline runs from the attempt
    assert not kinds(state.handle(Tick(), 21.0), Fail)
    [fail] = kinds(state.handle(Tick(), 21.5), Fail)
    assert fail.message == ("could not connect to party 1 within 20 s: it left the room before "
                            "the channel was up and did not return (did it fail? see its "
                            "output); candidates we offered: host")


def test_a_peer_that_leaves_and_returns_in_time_gets_a_new_offer() -> None:
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    state.handle(PeerLeft(1, channel_open=False, tried=None), 2.0)
    actions = state.handle(PeerJoined(1), 15.0)
    assert kinds(actions, Offer) == [Offer(1)] and state.links[1].since == 15.0
    up(state, 1, 16.0)
    state.handle(CheckComplete(), 16.0)
    assert not kinds(state.handle(Tick(), 40.0), Fail) and state.done


def test_a_peer_that_leaves_once_our_channel_is_open_is_not_waited_for() -> None:
    """It finished its side of the handshake and left the room, as it should."""
    state = MeshState(0, 2, "room", 0.0, T, roster_known=True)
    state.handle(Joined((1,)), 1.0)
    state.handle(ChannelOpen(1), 2.0)
    assert state.handle(PeerLeft(1, channel_open=True, tried="x"), 2.5) == []
    assert state.links[1].state is Link.AUTHENTICATING


# -- outage and repair ----------------------------------------------------------------------------

def test_outage_then_repair_restores_the_link_and_says_so() -> None:
    state = built(pid=0, parties=2)
    actions = state.handle(ChannelDown(1, "nothing received for 10.0 s", resumable=True), 100.0)
    assert texts(actions) == ["party 0: the connection to party 1 was interrupted (nothing "
                              "received for 10.0 s); restoring it for up to 30 s"]
    assert Close(1) in actions and Repair() in actions and state.repairing
    assert not kinds(actions, Offer)  # not in the room: the offer waits for the rejoin
    assert state.next_deadline() == 130.0
    assert kinds(state.handle(Joined((1,)), 101.0), Offer) == [Offer(1)]  # one offer per rejoin
    state.handle(ChannelOpen(1), 102.0)
    assert state.links[1].state is Link.INTERRUPTED  # until authenticated
    actions = state.handle(Authenticated(1, "party 1", "relay -> host"), 103.0)
    assert texts(actions) == ["party 0: the connection to party 1 is restored (path relay -> "
                              "host); the stream goes on where it stopped"]
    assert not state.repairing and state.links[1].outage.verdict == ALIVE
    assert state.next_deadline() is None  # nothing timed: no wake-ups at all


def test_a_rejoin_offers_once_and_a_stalled_attempt_is_offered_again() -> None:
    state = built(pid=0, parties=2)
    state.handle(ChannelDown(1, "the data channel closed", resumable=True), 100.0)
    assert kinds(state.handle(Joined((1,)), 101.0), Offer) == [Offer(1)]
    assert not kinds(state.handle(Tick(), 110.0), Offer)
    assert state.next_deadline() == 121.0
    assert kinds(state.handle(Tick(), 121.5), Offer) == [Offer(1)]


def test_a_refused_repair_handshake_warns_and_tries_again() -> None:
    """Whoever answered may not have been the party: the next attempt may reach it."""
    state = built(pid=0, parties=2)
    state.handle(ChannelDown(1, "the data channel closed", resumable=True), 100.0)
    state.handle(Joined((1,)), 101.0)
    state.handle(ChannelOpen(1), 102.0)
    reason = "authentication of party 1 failed: fingerprint mismatch"
    actions = state.handle(Refused(1, reason), 102.5)
    assert texts(actions) == [f"party 0: restoring the connection to party 1: {reason}"]
    assert kinds(actions, Offer) == [Offer(1)] and not kinds(actions, Fail)
    # A refusal on an attempt already replaced is said, and changes nothing else.
    actions = state.handle(Refused(1, reason, current=False), 102.6)
    assert len(texts(actions)) == 1 and not kinds(actions, Offer)
    [lose] = kinds(state.handle(Tick(), 130.0), Lose)
    assert lose == Lose(1, "the connection broke and was not restored within 30 s (last "
                           f"problem: {reason})")


def test_the_higher_index_waits_for_the_offer_and_a_failed_attempt_is_closed() -> None:
    state = built(pid=1, parties=2)
    state.handle(ChannelDown(0, "the data channel closed", resumable=True), 100.0)
    assert not kinds(state.handle(Joined((0,)), 101.0), Offer)
    state.handle(AttemptStarted(0), 102.0)
    assert state.handle(AttemptFailed(0), 103.0) == [Close(0)]
    state.handle(RepairProblem("room server: gone"), 104.0)
    [lose] = kinds(state.handle(Tick(), 130.0), Lose)
    assert lose.reason.endswith("(last problem: room server: gone)")


def test_without_an_outage_limit_or_a_resumable_stream_a_lost_channel_loses_the_party() -> None:
    for timeouts, resumable in ((Timeouts(outage=0.0), True), (T, False)):
        state = built(pid=0, parties=2, timeouts=timeouts)
        actions = state.handle(ChannelDown(1, "the peer connection is failed",
                                           resumable=resumable), 100.0)
        assert kinds(actions, Lose) == [Lose(1, "the peer connection is failed")]
        assert state.links[1].state is Link.LOST and not kinds(actions, Repair)
        # Its channel's last events change nothing: the party is lost once.
        assert state.handle(ChannelDown(1, "the data channel closed", resumable=True),
                            100.5) == []


def test_a_peer_that_left_the_room_during_a_repair_is_offered_again_when_back() -> None:
    state = built(pid=0, parties=3)
    state.handle(ChannelDown(2, "the data channel closed", resumable=True), 100.0)
    state.handle(Joined((2,)), 101.0)
    assert kinds(state.handle(PeerLeft(2, channel_open=False, tried=None), 102.0),
                 Close) == [Close(2)]
    assert not kinds(state.handle(Tick(), 125.0), Offer)  # not in the room: nothing to offer
    assert kinds(state.handle(PeerJoined(2), 126.0), Offer) == [Offer(2)]
    assert state.links[1].state is Link.UP  # the other link never noticed


def test_a_second_link_going_down_while_in_the_room_for_the_first_is_offered_at_once() -> None:
    """Once in the room (restoring party 1) a rejoin does not come again: party 2, present
    there, is offered when its own channel goes down (a CI run lost it for want of this)."""
    state = built(pid=0, parties=3)
    state.handle(ChannelDown(1, "nothing received for 10.0 s", resumable=True), 100.0)
    assert kinds(state.handle(Joined((1, 2)), 101.0), Offer) == [Offer(1)]
    actions = state.handle(ChannelDown(2, "nothing received for 11.0 s", resumable=True), 101.5)
    assert Close(2) in actions and kinds(actions, Offer) == [Offer(2)]
    assert actions.index(Close(2)) < actions.index(Offer(2))  # the old connection goes first
    state.handle(ChannelOpen(2), 102.0)
    state.handle(Authenticated(2, "party 2", "host -> host"), 102.5)
    assert state.links[2].state is Link.UP
    # The higher index waits for the offer instead.
    state = built(pid=2, parties=3)
    state.handle(ChannelDown(0, "the data channel closed", resumable=True), 100.0)
    state.handle(Joined((0, 1)), 101.0)
    assert not kinds(state.handle(ChannelDown(1, "the data channel closed", resumable=True),
                                  101.5), Offer)


# -- the one decider ------------------------------------------------------------------------------

def test_outage_answers_alive_interrupted_and_lost() -> None:
    outage = Outage(3, outage_limit=30.0)
    assert outage.check(0.0) == ALIVE
    assert outage.channel_down(1.0, "x", connected=True, resumable=True) == Interrupted(31.0, "x")
    assert outage.channel_down(2.0, "y", connected=True, resumable=True) == Interrupted(31.0, "x")
    assert outage.check(30.9) == Interrupted(31.0, "x")
    outage.problem = "room server: gone"
    assert outage.check(31.0) == Lost("the connection broke and was not restored within 30 s "
                                      "(last problem: room server: gone)")
    outage = Outage(3, outage_limit=30.0)
    outage.channel_down(1.0, "y", connected=True, resumable=True)
    outage.restored()
    assert outage.check(100.0) == ALIVE and outage.problem is None
    connecting = Outage(3, outage_limit=30.0)
    assert connecting.channel_down(1.0, "z", connected=False, resumable=False).until == 3.0
    assert connecting.check(3.0) == Lost("lost the connection to party 3: z")


# -- the driver: a real room server, real aiortc, in this process ---------------------------------

@pytest.fixture
def room_server():
    from helpers import RoomServerProcess

    server = RoomServerProcess()
    yield server
    server.close()


def config(url: str, pid: int, parties: int, **options) -> MeshConfig:
    from seats import key, roster_of

    from mpc_net.native.identity import verify

    return MeshConfig(signaling_url=url, room="test-mesh", pid=pid, parties=parties,
                      identity=key(pid), verify=verify, roster=roster_of(parties), **options)


class Board:
    """A MeshObserver that records what it is told."""

    def __init__(self) -> None:
        self.links: list[tuple[int, Link]] = []
        self.stood: dict | None = None

    def link_changed(self, party, link, pc, transport) -> None:
        self.links.append((party, link))
        assert pc is not None or link is not Link.CONNECTING  # the attempt is there to watch
        assert transport is not None or link is not Link.UP

    def connected(self, transports) -> None:
        self.stood = transports


async def test_driver_builds_a_mesh_and_tells_its_observer(room_server, caplog) -> None:
    from mpc_net.native.peer import NativePeerConnection, use_host_addresses
    from mpc_net.native.signaling import SignalingClient

    use_host_addresses(["127.0.0.1"])
    caplog.set_level(logging.INFO, logger="mpc_net.mesh")
    boards = [Board(), Board()]
    meshes = [Mesh(config(room_server.url, i, 2), NativePeerConnection, pytest.fail,
                   SignalingClient,
                   observer=boards[i]) for i in range(2)]
    transports = await asyncio.wait_for(asyncio.gather(*(m.connect() for m in meshes)), 30)
    assert [sorted(t) for t in transports] == [[1], [0]]
    assert all(t.linked for ts in transports for t in ts.values())
    assert boards[0].links[-1] == (1, Link.UP) and (1, Link.CONNECTING) in boards[0].links
    assert boards[1].stood is transports[1]
    codes = {r.getMessage().split("check code of this run: ")[1][:19] for r in caplog.records
             if "check code of this run" in r.getMessage()}
    assert len(codes) == 1  # both parties show the same code
    assert meshes[0].paths == {1: ("host", "host")}
    for ts in transports:
        for t in ts.values():
            t.attach(asyncio.Protocol())  # as MPyC does, which then ends the stream
            t.close()
    await asyncio.wait_for(asyncio.gather(*(m.close() for m in meshes)), 10)


async def test_peer_connections_and_offers_are_made_before_the_peer_arrives(room_server) -> None:
    """Party 0, alone in the room, has its offer to party 1 ready before party 1 starts; party 1
    makes its peer connection to 0 on joining, before 0's offer arrives. Each makes one."""
    from mpc_net.native.peer import NativePeerConnection, use_host_addresses
    from mpc_net.native.signaling import SignalingClient

    use_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    made: dict[int, list[NativePeerConnection]] = {0: [], 1: []}
    offered: list[float] = []

    def factory(i: int):
        def new(*args, **kwargs) -> NativePeerConnection:
            pc = NativePeerConnection(*args, **kwargs)
            made[i].append(pc)
            create_offer = pc.create_offer

            async def timed_offer():
                offer = await create_offer()
                offered.append(loop.time())
                return offer

            pc.create_offer = timed_offer
            return pc
        return new

    meshes = [Mesh(config(room_server.url, i, 2), factory(i), pytest.fail, SignalingClient)
              for i in range(2)]
    first = asyncio.ensure_future(meshes[0].connect())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if offered:
            break
    second_started = loop.time()
    transports = await asyncio.wait_for(asyncio.gather(first, meshes[1].connect()), 30)
    assert offered and offered[0] < second_started
    assert [len(made[i]) for i in (0, 1)] == [1, 1]
    assert all(t.linked for ts in transports for t in ts.values())
    for ts in transports:
        for t in ts.values():
            t.attach(asyncio.Protocol())
            t.close()
    await asyncio.wait_for(asyncio.gather(*(m.close() for m in meshes)), 10)


async def test_driver_explains_a_join_timeout_while_another_roster_uses_the_room(
        room_server, caplog) -> None:
    from seats import key, roster_of

    from mpc_net.native.identity import verify
    from mpc_net.native.peer import NativePeerConnection
    from mpc_net.native.signaling import SignalingClient

    ours = config(room_server.url, 0, 2, join_timeout=3.0)
    theirs = MeshConfig(signaling_url=room_server.url, room="test-mesh", pid=1, parties=2,
                        identity=key(3), verify=verify, roster=roster_of(2, first=2))
    stranger = Mesh(theirs, NativePeerConnection, pytest.fail, SignalingClient)
    waiting = asyncio.ensure_future(stranger.connect())
    try:
        with pytest.raises(MeshError) as failure:
            mesh = Mesh(ours, NativePeerConnection, pytest.fail, SignalingClient)
            await asyncio.wait_for(mesh.connect(), 10)
    finally:
        waiting.cancel()
    assert str(failure.value) == (
        "parties [1] did not join room 'test-mesh' within 3 s; parties with another roster use "
        "room 'test-mesh': check that every party has the same roster file")
    assert "is also used by parties with another roster" in caplog.text


class ReusedCertificatePeer:
    """A backend's peer connection, its channel open, that offers a given certificate."""

    def __init__(self, fingerprint: str) -> None:
        self.local_sdp = f"v=0\r\na=fingerprint:sha-256 {fingerprint}\r\n"
        self.remote_sdp = "v=0\r\na=fingerprint:sha-256 BB:11\r\n"
        self.channel = ScriptedHandshakeChannel()
        self.opened = asyncio.get_running_loop().create_future()
        self.opened.set_result(None)

    def bind(self, events) -> None:
        pass


class ScriptedHandshakeChannel:
    readyState = "open"
    bufferedAmount = 0
    bufferedAmountLowThreshold = 0

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)


async def test_a_reused_local_certificate_is_refused() -> None:
    """The handshake's freshness rests on a new certificate of ours for every connection: a
    backend that reused one gets a refusal, not a handshake a recording could pass."""
    from seats import roster_of

    from mpc_net.mesh.peers import Peers
    from mpc_net.records import RecordType, decode

    events: list = []
    tasks: list[asyncio.Task] = []
    peers = Peers(config("ws://unused", 0, 2), lambda *a, **k: None, lambda e: None,
                  events.append, lambda coro: tasks.append(asyncio.ensure_future(coro)))
    peers.roster = asyncio.get_running_loop().create_future()
    peers.roster.set_result(roster_of(2))
    first, again = ReusedCertificatePeer("AA:00"), ReusedCertificatePeer("AA:00")
    for pc in (first, again):
        peers.connections[1] = pc
        peers._channel_opened(1, pc, pc.opened)
        await asyncio.sleep(0.05)
    refusals = [e for e in events if isinstance(e, Refused)]
    assert len(refusals) == 1 and "certificate was used on an earlier connection" in \
        refusals[0].reason, events
    assert [decode(m)[0] for m in first.channel.sent] == [RecordType.HELLO, RecordType.AUTH]
    assert again.channel.sent == []  # no statement for a certificate used before
    for task in tasks:
        task.cancel()
