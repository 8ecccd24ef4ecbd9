"""The room server as gatekeeper, with real `mpc-net run` parties: outsiders who know a room's
name learn nothing and stop nothing, and a party with another roster is told so, not left to
wait in silence."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seats import SeatKey, raw_join
from websockets.asyncio.client import connect

from mpc_net.signaling import protocol

from helpers import DEMOS, RoomServerProcess, make_credentials, program_lines, start_parties

SCRIPT = DEMOS / "auction.py"


class Lines:
    """A process's stderr lines, each with when it came, read in a thread as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(line for _, line in self.lines)

    def first(self, words: str) -> float | None:
        return next((t for t, line in self.lines if words in line), None)


async def _outsider(url: str, room: str, seated: asyncio.Event,
                    stop: asyncio.Event) -> list[dict]:
    """Someone who knows only the room name: it tries today's join of the first protocol, then
    takes party 1 with an open seat before the roster's parties come, and sends junk all along.
    Returns everything the room server sent it."""
    heard = []
    async with connect(url) as old:
        await old.send(json.dumps({"type": "join", "version": 1, "room": room, "party": 1,
                                        "parties": 2}))
        heard.append(json.loads(await old.recv()))
    async with connect(url) as ws:
        heard.append(await raw_join(ws, room, 1, 2, signer=SeatKey()))
        assert heard[-1]["type"] == "joined", heard
        seated.set()
        junk = [protocol.encode(protocol.Signal(0, {"description": {"type": "answer",
                                                                    "sdp": "v=0"}})),
                "{not json", protocol.encode(protocol.Leave())[:-2]]
        # Within the rate limit, so that it stays all along.
        while not stop.is_set():
            await ws.send(random.choice(junk))
            await asyncio.sleep(0.1)
        await ws.send(protocol.encode(protocol.Hello()))
        while (msg := json.loads(await ws.recv()))["type"] != "challenge":
            heard.append(msg)
    return heard


async def test_outsider_who_takes_the_seat_first_stops_nothing_and_learns_nothing(
        tmp_path: Path) -> None:
    server = RoomServerProcess()
    try:
        seated, stop = asyncio.Event(), asyncio.Event()
        outsider = asyncio.create_task(_outsider(server.url, "guarded", seated, stop))
        # It holds party 1's seat (an open one) before the roster's parties come.
        await asyncio.wait_for(seated.wait(), 20)
        credentials = make_credentials(tmp_path, 2)
        procs = start_parties(SCRIPT, 2, server.url, "guarded", credentials=credentials)
        results = [await asyncio.to_thread(proc.communicate, timeout=120) for proc in procs]
        stop.set()
        heard = await outsider
    finally:
        server.close()
    for i, (proc, (out, err)) in enumerate(zip(procs, results, strict=True)):
        assert proc.returncode == 0, f"party {i}: {err}"
        assert "Winner: party 1" in "\n".join(program_lines(out))
    old, joined, *rest = heard
    assert old["code"] == "unsupported-version" and "version 1" in old["message"], old
    assert joined["peers"] == [] and joined["keys"] == {}
    # Only that another roster uses the name, and the errors its junk earned.
    assert {m["type"] for m in rest} <= {"other-roster", "error"}, rest
    assert [m["type"] for m in rest].count("other-roster") == 1, rest
    # Nothing of the run: no key of the roster, no description, no candidate, no address.
    public = json.loads(Path(credentials[0][3]).read_text())["parties"]
    text = json.dumps(heard)
    assert not any(p["key"] in text for p in public)
    assert "sdp" not in text and "candidate" not in text and "127.0.0.1" not in text


def _mixed_round(server: RoomServerProcess, credentials: list, round_: int,
                 rng: random.Random) -> None:
    """One room: the three parties start in the order `rng` gives, up to 3 s apart; each must
    say within 15 s of the last start, in words about rosters, what is wrong, and not exit 0."""
    order = rng.sample(range(3), 3)
    pauses = [rng.uniform(0, 3) for _ in order]
    room = f"mixed-{round_}"
    procs: dict[int, subprocess.Popen] = {}
    lines: dict[int, Lines] = {}
    for i, pause in zip(order, pauses, strict=True):
        [procs[i]] = start_parties(SCRIPT, 3, server.url, room, "--join-timeout", "20",
                                   credentials=credentials, only=[i])
        lines[i] = Lines(procs[i])
        last_start = time.monotonic()
        time.sleep(pause)
    for i, proc in procs.items():
        proc.wait(timeout=90)
        err = lines[i].text()
        where = f"round {round_}, order {order}, party {i}:\n{err}"
        assert proc.returncode not in (0, None), where
        assert "Traceback" not in err and "TURN" not in err and "NAT" not in err, where
        said = lines[i].first("another roster")
        assert said is not None and said - last_start < 15, where
        assert "roster file" in err.strip().splitlines()[-1], where


def test_a_party_with_another_roster_is_told_not_left_to_wait(tmp_path: Path) -> None:
    """Party 2 runs with another roster than parties 0 and 1; in every start order each party
    says within seconds, in words about rosters, what is wrong, and none exits 0. The five
    rooms run at once: each party waits out --join-timeout, which is the time of the test."""
    for name in ("ours", "theirs"):
        (tmp_path / name).mkdir()
    ours, theirs = (make_credentials(tmp_path / name, 3) for name in ("ours", "theirs"))
    credentials = [ours[0], ours[1], theirs[2]]
    server = RoomServerProcess()
    rng = random.Random(20261127)
    rounds = [random.Random(rng.random()) for _ in range(5)]
    try:
        with ThreadPoolExecutor(len(rounds)) as pool:
            done = [pool.submit(_mixed_round, server, credentials, k, r)
                    for k, r in enumerate(rounds)]
            for future in done:
                future.result()
    finally:
        server.close()
