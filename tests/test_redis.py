"""Room-server processes sharing rooms through a real Redis (Debian's redis-server, started here
on a loopback port of its own): computations spread over processes, a process stopped or killed,
Redis restarted, and seats that stay exact across processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pytest
import redis
import redis.asyncio
from seats import join_message, raw_join, roster_of
from sharedrooms import check_outputs, shared_room_server
from websockets.asyncio.client import connect
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_now

from mpc_net.signaling import protocol
from mpc_net.signaling.claims import BUSY, Claims, RedisSlow
from mpc_net.signaling.courier import STALL, Heartbeat
from mpc_net.signaling.store import (
    HEARTBEAT,
    KEY_TTL_MS,
    alive_key,
    owner_key,
    redis_client,
    redis_errors,
)

from helpers import (
    DEMOS,
    RoomServerProcess,
    make_credentials,
    mpc_net,
    mpyc_tcp,
    program_lines,
    start_parties,
)

TOKEN = "a-token-for-every-process"
TURN = ["--turn-url", "turn:127.0.0.1:3478", "--turn-secret", "shared-by-every-process"]


@pytest.fixture
def two_processes(redis_server) -> Iterator[tuple[RoomServerProcess, RoomServerProcess]]:
    """Two room-server processes sharing rooms; stopped at the end unless the test stopped one
    (closing a stopped or killed one again is harmless)."""
    pair = shared_room_server(redis_server), shared_room_server(redis_server)
    yield pair
    for server in pair:
        server.close()


def health(server: RoomServerProcess) -> tuple[int, dict]:
    url = server.url.replace("ws://", "http://") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for_health(server: RoomServerProcess, reachable: bool) -> dict:
    deadline = time.monotonic() + 30
    while True:
        status, body = health(server)
        if body["redis"] is reachable:
            assert status == (200 if reachable else 503), (status, body)
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def run_spread(script: Path, urls: list[str], room: str, credentials: list[list[str]],
               expected: list[str], *args: str) -> None:
    """Party i of len(urls) parties connects to urls[i] (a comma list: tried in order)."""
    procs = [start_parties(script, len(urls), url, room, *args, credentials=credentials,
                           only=[i])[0] for i, url in enumerate(urls)]
    check_outputs(procs, expected)


def test_parties_spread_over_two_processes_and_after_one_stopped(two_processes,
                                                                  tmp_path) -> None:
    a, b = two_processes
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, "-M3")
    credentials = make_credentials(tmp_path, 3)
    run_spread(script, [a.url, a.url, b.url], "spread", credentials, expected)
    a.close()
    # The parties name both processes; the stopped one is refused, the next one serves.
    both = f"{a.url},{b.url}"
    run_spread(script, [both, both, both], "after-stop", credentials, expected)
    assert b.proc.poll() is None


def test_run_goes_on_when_a_process_is_killed(two_processes, tmp_path) -> None:
    a, b = two_processes
    script = DEMOS / "comparisons.py"
    expected = mpyc_tcp(script, "-M3", "200")
    credentials = make_credentials(tmp_path, 3)
    ab, ba = f"{a.url},{b.url}", f"{b.url},{a.url}"
    procs = [start_parties(script, 3, url, "killed", "200", "--outage-limit", "30",
                           credentials=credentials, only=[i])[0]
             for i, url in enumerate([ab, ab, ba])]
    deadline = time.monotonic() + 60
    while "connected to all" not in procs[0].stderr.readline():
        assert time.monotonic() < deadline and procs[0].poll() is None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    done = [proc.communicate(timeout=180) for proc in procs]
    for i, (proc, (out, err)) in enumerate(zip(procs, done, strict=True)):
        assert proc.returncode == 0, f"party {i}: {err}\n" + "\n".join(e for _, e in done)
        assert program_lines(out) == expected, f"party {i}"
    # The next run starts at once: every party falls over to the living process.
    run_spread(script, [ab, ab, ab], "after-kill", credentials, expected, "200")


def test_build_goes_on_when_a_process_dies_before_the_last_party_joins(two_processes,
                                                                        tmp_path) -> None:
    a, b = two_processes
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, "-M3")
    credentials = make_credentials(tmp_path, 3)
    ab = f"{a.url},{b.url}"
    first = [start_parties(script, 3, ab, "rebuilt", credentials=credentials, only=[i])[0]
             for i in (0, 1)]
    for proc in first:
        _wait_for_line(proc, "joined room")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    # Their mesh waits for party 2: they join again through the living process (once the dead
    # one's seats and room have expired in Redis), and party 2 joins them there.
    for proc in first:
        _wait_for_line(proc, "joined room")
    last = start_parties(script, 3, b.url, "rebuilt", credentials=credentials, only=[2])[0]
    check_outputs([*first, last], expected)


def _wait_for_line(proc: subprocess.Popen, text: str) -> None:
    """Read a party's log up to the next line that holds `text`."""
    deadline = time.monotonic() + 90
    seen: list[str] = []
    while not seen or text not in seen[-1]:
        seen.append(proc.stderr.readline())
        assert time.monotonic() < deadline and proc.poll() is None, (seen, proc.communicate())


def test_mpc_net_web_shares_rooms_with_a_signal_process(redis_server, tmp_path) -> None:
    """`mpc-net web --redis`: its room server is one more process sharing rooms (the pages it
    serves are the browser tests'; here a directory with an index stands for the bundle)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "index.html").write_text("<!doctype html>\n")
    web = RoomServerProcess(command=[sys.executable, "-m", "mpc_net", "web", "--port", "0",
                                     "--bundle", str(bundle), "--redis", redis_server.url])
    other = shared_room_server(redis_server)
    try:
        script = DEMOS / "auction.py"
        run_spread(script, [web.url, other.url, web.url], "web-and-signal",
                   make_credentials(tmp_path, 3), mpyc_tcp(script, "-M3"))
    finally:
        web.close()
        other.close()


def test_redis_restarted_between_two_runs(two_processes, redis_server, tmp_path) -> None:
    a, b = two_processes
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, "-M3")
    credentials = make_credentials(tmp_path, 3)
    run_spread(script, [a.url, b.url, a.url], "before-restart", credentials, expected)
    redis_server.stop()
    for server in (a, b):
        wait_for_health(server, reachable=False)
    time.sleep(3)  # a duration, not a condition: rounds of backoff must not end the processes
    assert a.proc.poll() is None and b.proc.poll() is None
    redis_server.start()
    for server in (a, b):
        wait_for_health(server, reachable=True)
    # Each job's first command after the restart finds its pooled connection dead: that must
    # not make a process say "unreachable" again (a party connecting then would be refused).
    deadline = time.monotonic() + 2 * HEARTBEAT
    while time.monotonic() < deadline:
        assert [health(server)[0] for server in (a, b)] == [200, 200]
    # Well within check_outputs' wait: a party that waits in vain says for what.
    run_spread(script, [b.url, a.url, b.url], "after-restart", credentials, expected,
               "--join-timeout", "60")


DEAF = "deaf"  # the Redis user of the process that a test stops listening


@pytest.fixture
def deaf_and_other(redis_server) -> Iterator[tuple[RoomServerProcess, RoomServerProcess]]:
    """Two processes sharing rooms; the first is Redis user DEAF, whom `deafened` stops."""
    redis.Redis.from_url(redis_server.url).acl_setuser(
        DEAF, enabled=True, passwords=["+pw"], commands=["+@all"], keys=["*"], channels=["*"])
    url = redis_server.url.replace("redis://", f"redis://{DEAF}:pw@")
    pair = RoomServerProcess(0, "--redis", url), shared_room_server(redis_server)
    yield pair
    for server in pair:
        server.close()


@contextmanager
def deafened(redis_server) -> Iterator[None]:
    """The DEAF process hears nothing on its channel meanwhile, as between a Redis restart and
    its listener subscribing again: its subscription ended, SUBSCRIBE refused until the end."""
    control = redis.Redis.from_url(redis_server.url)
    control.acl_setuser(DEAF, enabled=True, commands=["-subscribe"])
    try:
        assert control.client_kill_filter(_type="pubsub", user=DEAF) == 1
        while len(control.pubsub_channels()) != 1:  # the other process's channel
            time.sleep(0.05)
        yield
    finally:
        control.acl_setuser(DEAF, enabled=True, commands=["+subscribe"])
        control.close()


async def test_messages_to_a_process_not_listening_yet_wait_for_it(deaf_and_other,
                                                                     redis_server) -> None:
    """Pub/sub keeps nothing for a channel nobody listens on: a join and a signal through one
    process for a room the other holds, while the holder does not listen, wait for it, in
    order."""
    deaf, other = deaf_and_other
    roster = roster_of(2)
    async with connect(deaf.url) as holder, connect(other.url) as second:
        assert (await raw_join(holder, "deaf", 0, 2, roster=roster))["type"] == "joined"
        await second.send(protocol.encode(protocol.Hello()))
        challenge = protocol.decode_bytes(json.loads(await second.recv())["challenge"])
        with deafened(redis_server):
            await second.send(protocol.encode(join_message(challenge, "deaf", 1, 2,
                                                           roster=roster)))
            await second.send(json.dumps({"type": "signal", "to": 0, "data": {"n": 1}}))
            await asyncio.sleep(1)  # a duration: the messages find nobody listening, repeatedly
            status = await asyncio.to_thread(health, deaf)
        joined = json.loads(await asyncio.wait_for(second.recv(), 10))
        assert joined["type"] == "joined" and joined["peers"] == [0], joined
        assert json.loads(await asyncio.wait_for(holder.recv(), 10))["type"] == "peer-joined"
        relayed = json.loads(await asyncio.wait_for(holder.recv(), 10))
        assert relayed == {"type": "signal", "from": 1, "data": {"n": 1}}, relayed
    # Not listening, a process cannot share rooms: /health said so.
    assert status[0] == 503 and status[1]["redis"] is False, status


def test_a_join_unanswered_ends_the_party_at_its_join_timeout(deaf_and_other, redis_server,
                                                               tmp_path) -> None:
    """A join held for a room's holder that does not listen (nor ever may again) is not waited
    for beyond the party's join timeout: the party says so and exits."""
    deaf, other = deaf_and_other
    credentials = make_credentials(tmp_path, 2)
    script = DEMOS / "auction.py"
    holder = start_parties(script, 2, deaf.url, "unanswered", credentials=credentials,
                           only=[0])[0]
    try:
        _wait_for_line(holder, "joined room")
        with deafened(redis_server):
            late = start_parties(script, 2, other.url, "unanswered", "--join-timeout", "5",
                                 credentials=credentials, only=[1])[0]
            out, err = late.communicate(timeout=60)
    finally:
        holder.kill()
        holder.communicate()
    assert late.returncode == 1, err
    assert program_lines(out) == []
    assert ("mpc-net: the room server did not answer our join of room 'unanswered' within the "
            "join timeout (5 s)") in err, err


async def test_seats_presence_and_signals_across_processes(redis_server) -> None:
    options = ["--join-token", TOKEN, *TURN]
    a = shared_room_server(redis_server, *options)
    b = shared_room_server(redis_server, *options)
    roster = roster_of(2)
    try:
        async with connect(a.url) as holder, connect(b.url) as second, \
                connect(b.url) as other:
            joined = await raw_join(holder, "shared", 0, 2, roster=roster, token=TOKEN)
            assert joined["type"] == "joined" and joined["peers"] == []
            # The seat's holder is on another process: refused as on one process.
            refused = await raw_join(second, "shared", 0, 2, roster=roster, token=TOKEN)
            assert refused == {"type": "error", "code": "party-taken",
                               "message": "party 0 of room shared is taken"}
            assert (await raw_join(other, "shared", 1, 2, roster=roster))["code"] == "bad-token"
            # Party 1 on the other process: presence, relayed signals, TURN credentials.
            joined = await raw_join(other, "shared", 1, 2, roster=roster, token=TOKEN)
            assert joined["type"] == "joined" and joined["peers"] == [0]
            assert [s["urls"] for s in joined["ice_servers"]] == [["turn:127.0.0.1:3478"]]
            assert joined["ice_servers"][0]["username"].endswith(":shared-1")
            assert json.loads(await holder.recv())["type"] == "peer-joined"
            await other.send(json.dumps({"type": "signal", "to": 0,
                                         "data": {"description": {"type": "offer",
                                                                  "sdp": "v=0\r\n"}}}))
            relayed = json.loads(await holder.recv())
            assert relayed["type"] == "signal" and relayed["from"] == 1
            await other.close()
            assert json.loads(await holder.recv()) == {"type": "peer-left", "party": 1}
            # Once the holder leaves, its seat is free on every process.
            await holder.close()
            async with connect(b.url) as later:
                joined = await raw_join(later, "shared", 0, 2, roster=roster, token=TOKEN)
                assert joined["type"] == "joined", joined
    finally:
        a.close()
        b.close()


def test_bad_redis_url_is_a_usage_error() -> None:
    for url in ("http://127.0.0.1:6379", "redis://", "redis://host:99999", "redis://h/x"):
        done = mpc_net("signal", "--redis", url, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "--redis" in done.stderr, done.stderr


def test_a_bad_room_server_in_the_list_is_a_usage_error(tmp_path) -> None:
    credentials = make_credentials(tmp_path, 2)[0]
    done = mpc_net("run", str(DEMOS / "auction.py"), "-M2", "-I", "0", "--room", "r",
                   "--signal", "ws://127.0.0.1:1,http://127.0.0.1:2", *credentials, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "--signal must be ws://HOST:PORT or wss://HOST:PORT, not 'http://127.0.0.1:2'" \
        in done.stderr and "Traceback" not in done.stderr, done.stderr


async def test_join_burst_beyond_the_queue_is_refused_as_busy_and_the_rest_seated(
        redis_server) -> None:
    server = shared_room_server(redis_server, "--max-pending-joins", "3")
    roster = roster_of(6)
    try:
        async with AsyncExitStack() as stack:
            conns = [await stack.enter_async_context(connect(server.url)) for _ in range(6)]
            await _burst(server, redis_server, conns, roster)
    finally:
        server.close()


async def _burst(server: RoomServerProcess, redis_server, conns: list, roster) -> None:
    # Redis holds every claim for a while: three joins wait, the other three do not.
    redis.Redis.from_url(redis_server.url).client_pause(3000, all=False)
    joins = [asyncio.ensure_future(raw_join(ws, "burst", i, 6, roster=roster))
             for i, ws in enumerate(conns)]
    # The refusals come at once: then three joins wait in the queue for Redis.
    pending, loop = set(joins), asyncio.get_running_loop()
    deadline = loop.time() + 2.5  # within the pause
    while len(pending) > 3:
        assert loop.time() < deadline, "fewer than three joins were refused at once"
        _, pending = await asyncio.wait(pending, timeout=deadline - loop.time(),
                                        return_when=asyncio.FIRST_COMPLETED)
    # A paused Redis is slow, not gone.
    assert (await asyncio.to_thread(health, server))[1]["redis"] is True
    replies = await asyncio.gather(*joins)
    refused = [i for i, r in enumerate(replies) if r["type"] == "error"]
    assert [replies[i] for i in refused] == [
        {"type": "error", "code": "busy", "message": BUSY}] * 3, replies
    assert sum(r["type"] == "joined" for r in replies) == 3, replies
    # Tried again on the same connections, the refused ones are seated.
    for i in refused:
        joined = await raw_join(conns[i], "burst", i, 6, roster=roster)
        assert joined["type"] == "joined", joined


async def test_a_late_redis_reply_is_slow_and_a_refused_connection_unreachable(
        redis_server) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=0.5)
    claims = Claims(client, "us", redis_errors(), limit=10)
    runner = asyncio.create_task(claims.run())
    try:
        assert await claims.claim("first") == "us"
        await client.set(owner_key("taken"), "them")
        assert await claims.claim("taken") == "them"
        await client.client_pause(2000, all=False)
        with pytest.raises(RedisSlow):
            await claims.claim("second")
        redis_server.stop()
        with pytest.raises(redis_errors()) as info:
            await claims.claim("third")
        assert not isinstance(info.value, RedisSlow)
        assert claims.waiting == 0
    finally:
        runner.cancel()
        await client.aclose()


async def test_connections_kept_across_a_redis_restart_serve_the_next_commands(
        redis_server) -> None:
    """The pool's connections outlive a Redis restart as dead sockets: the next commands (a
    beat, a claim, a publish, at once) still get their answers, on new connections."""
    client = redis_client(redis_server.url)
    try:
        # Four connections at once, then kept by the pool.
        await asyncio.gather(*(client.blpop(f"nothing{i}", 0.2) for i in range(4)))
        redis_server.stop()
        redis_server.start()
        replies = await asyncio.gather(*(client.set(f"key{i}", "1") for i in range(4)))
        assert replies == [True] * 4
    finally:
        await client.aclose()


def test_parties_refused_as_busy_try_again_and_run(redis_server, tmp_path) -> None:
    server = shared_room_server(redis_server, "--max-pending-joins", "1")
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, "-M3")
    credentials = make_credentials(tmp_path, 3)
    control = redis.Redis.from_url(redis_server.url)
    try:
        with connect_now(server.url) as holder:
            # The one place in the queue goes to a join that waits for a paused Redis.
            control.client_pause(30000, all=False)
            _send_a_join(holder)
            procs = start_parties(script, 3, server.url, "busy", credentials=credentials)
            deadline = time.monotonic() + 60
            while "(busy); trying again" not in procs[0].stderr.readline():
                assert time.monotonic() < deadline and procs[0].poll() is None
            control.client_unpause()
            check_outputs(procs, expected)
    finally:
        control.client_unpause()
        server.close()


def _send_a_join(ws: ClientConnection) -> None:
    """A join that waits while Redis is paused."""
    ws.send(protocol.encode(protocol.Hello()))
    challenge = protocol.decode_bytes(json.loads(ws.recv())["challenge"])
    ws.send(protocol.encode(join_message(challenge, "held", 0, 2, roster=roster_of(2))))


async def test_liveness_is_renewed_off_the_event_loop_until_the_loop_stalls(redis_server) -> None:
    heartbeat = Heartbeat(redis_server.url, "starved", redis_errors(), time.monotonic)
    control = redis.Redis.from_url(redis_server.url)
    key = alive_key("starved")
    heartbeat.start()
    try:
        # The event loop is blocked (as by a flood of messages): the thread renews the key.
        time.sleep(HEARTBEAT + 1)
        assert control.pttl(key) > KEY_TTL_MS - 2000
        # A loop that has not beaten for STALL seconds is stuck: its process is let go.
        heartbeat.progress = time.monotonic() - STALL - 1
        control.delete(key)
        time.sleep(HEARTBEAT + 1)
        assert not control.exists(key)
        heartbeat.progress = time.monotonic()
        time.sleep(HEARTBEAT + 1)
        assert control.exists(key)
    finally:
        await heartbeat.stop()
    control.delete(key)
    time.sleep(HEARTBEAT + 1)
    assert not control.exists(key)  # stopped: nothing renews it
