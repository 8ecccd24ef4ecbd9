"""Load on the room server: many concurrent websocket clients in rooms on loopback.

    python benchmarks/signaling_load.py [--clients 1000] [--rooms 250] [--cycles 2] [--rounds 5]

starts a room server in a child process (this script, `serve`), so that its memory is measured
alone, and drives it from this process: every client connects, then in each cycle all clients
join their room at once, every member signals every other member of its room for a number of
rounds (in bursts: all clients at the same moment; then paced: each at a random moment within a
spread), and all leave at once. It reports joins per second, the relay latency (from the
sender's send to the receiver's read, both in this process), and the server's resident memory
and CPU time. It stops
by itself within --time-limit seconds. `--url ws://127.0.0.1:PORT` drives a running server
instead (then give --server-pid for its memory).

All clients come from 127.0.0.1, so the child server runs with --max-connections-per-address 0
(no limit); the other limits keep their defaults, which this load stays within. The figures go
to stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect

from mpc_net.auth import encode_public_key
from mpc_net.mesh.room import BUSY_PAUSE
from mpc_net.signaling import protocol
from mpc_net.signaling.arguments import add_limit_arguments, limits_from
from mpc_net.signaling.logs import setup_logging
from mpc_net.signaling.server import RoomServer, serve_until_signal

CONNECT_CONCURRENCY = 100  # below the listen backlog, so no SYN is dropped and retried 1 s later
SERVER_OPTIONS = ["--max-connections-per-address", "0"]
_ROUTINE = re.compile(r"joined \(|left \(|open seats|shutting down|closing \d+ connections")


@dataclass
class Client:
    """One websocket client; a reader task sorts what arrives."""

    ws: ClientConnection
    room: str
    party: int
    parties: int
    latencies: list[float] = field(default_factory=list)
    signals: int = 0
    busy: int = 0  # joins refused as busy (room servers sharing rooms through Redis)
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    heard: asyncio.Event = field(default_factory=asyncio.Event)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)

    def start(self) -> asyncio.Task:
        return asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg["type"] == "signal":
                self.latencies.append(time.perf_counter() - msg["data"]["sent"])
                self.signals += 1
                self.heard.set()
            else:
                self.inbox.put_nowait(msg)

    async def expect(self, kind: str) -> dict:
        """The next message of this type; others (presence from the room) are skipped."""
        while (msg := await self.inbox.get())["type"] != kind:
            pass
        return msg

    async def join(self) -> float:
        """A proven seat: hello, then a join that signs the challenge (open seats); tried again
        after a pause while the server says it is busy, as parties do (mesh/room.py)."""
        began = time.perf_counter()
        pause = BUSY_PAUSE[0]
        while True:
            await self.ws.send(protocol.encode(protocol.Hello()))
            challenge = protocol.decode_bytes((await self.expect("challenge"))["challenge"])
            statement = protocol.seat_statement(challenge, self.room, self.party, self.parties,
                                                None)
            await self.ws.send(protocol.encode(protocol.Join(
                self.room, self.party, self.parties, key=encode_public_key(self.public_key),
                proof=self.key.sign(statement))))
            while (reply := await self.inbox.get())["type"] not in ("joined", "error"):
                pass
            if reply["type"] == "joined":
                return time.perf_counter() - began
            if reply["code"] != "busy":
                raise RuntimeError(f"join refused: {reply}")
            self.busy += 1
            await asyncio.sleep(random.uniform(pause / 2, pause))
            pause = min(2 * pause, BUSY_PAUSE[1])

    async def relay_round(self, expected_total: int, spread: float) -> None:
        """Signal every other member once, `spread` seconds or less from now, and wait until
        this round's signals from the others are in."""
        await asyncio.sleep(random.uniform(0, spread))
        for peer in range(self.parties):
            if peer != self.party:
                data = {"sent": time.perf_counter(), "sdp": "v=0 " + "a" * 600}
                await self.ws.send(json.dumps({"type": "signal", "to": peer, "data": data}))
        while self.signals < expected_total:
            self.heard.clear()
            await self.heard.wait()

    async def leave(self) -> None:
        await self.ws.send('{"type":"leave"}')
        # The server answers in order, so this probe's error means the leave was handled.
        await self.ws.send('{"type":"probe"}')
        await self.expect("error")


def rss_kib(pid: int) -> dict[str, int]:
    """Resident memory now (VmRSS) and at its peak so far (VmHWM) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def health(url: str) -> dict:
    parts = urlsplit(url)
    with urllib.request.urlopen(f"http://{parts.netloc}/health", timeout=10) as response:
        return json.load(response)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def open_clients(url: str, options: argparse.Namespace) -> list[Client]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    per_room = options.clients // options.rooms
    compression = None if options.compression == "none" else "deflate"

    async def one(i: int) -> Client:
        async with gate:
            ws = await connect(url, open_timeout=30, max_queue=None, compression=compression)
        return Client(ws, f"{options.room_prefix}{i // per_room}", i % per_room, per_room)

    return await asyncio.gather(*(one(i) for i in range(options.clients)))


async def relay_rounds(clients: list[Client], rounds: int, spread: float) -> tuple[float, list]:
    """Run relay rounds; return their time and the latencies measured in them."""
    before = [len(client.latencies) for client in clients]
    began = time.perf_counter()
    for _ in range(rounds):
        target = clients[0].signals + clients[0].parties - 1  # every member gets as many
        await asyncio.gather(*(client.relay_round(target, spread) for client in clients))
    elapsed = time.perf_counter() - began
    fresh = (client.latencies[n:] for client, n in zip(clients, before, strict=True))
    return elapsed, [t for latencies in fresh for t in latencies]


async def run_load(url: str, options: argparse.Namespace, pid: int | None) -> dict:
    memory: dict[str, dict[str, int]] = {}
    cpu: dict[str, float] = {}

    def sample(phase: str) -> None:
        if pid is not None:
            memory[phase] = rss_kib(pid)
            cpu[phase] = cpu_seconds(pid)

    sample("idle")
    began = time.perf_counter()
    clients = await open_clients(url, options)
    connect_s = time.perf_counter() - began
    readers = [client.start() for client in clients]
    sample("connected")
    join_s, join_latencies, leave_s = [], [], []
    burst_s, burst, paced_s, paced = 0.0, [], 0.0, []
    occupied: dict = {}
    for cycle in range(1, options.cycles + 1):
        began = time.perf_counter()
        join_latencies += await asyncio.gather(*(client.join() for client in clients))
        join_s.append(time.perf_counter() - began)
        occupied = await asyncio.to_thread(health, url)
        sample(f"joined #{cycle}")
        elapsed, latencies = await relay_rounds(clients, options.rounds, 0)
        burst_s, burst = burst_s + elapsed, burst + latencies
        elapsed, latencies = await relay_rounds(clients, options.paced_rounds, options.spread)
        paced_s, paced = paced_s + elapsed, paced + latencies
        sample(f"relayed #{cycle}")
        began = time.perf_counter()
        await asyncio.gather(*(client.leave() for client in clients))
        leave_s.append(time.perf_counter() - began)
        sample(f"left #{cycle}")
    await asyncio.gather(*(client.ws.close() for client in clients))
    await asyncio.gather(*readers)
    sample("closed")
    joins = options.clients * options.cycles
    return {
        "clients": options.clients, "rooms": options.rooms, "cycles": options.cycles,
        "rounds": options.rounds, "paced_rounds": options.paced_rounds,
        "spread_s": options.spread, "compression": options.compression, "connect_s": connect_s,
        "joins": joins, "joins_per_s": joins / sum(join_s),
        "busy": sum(client.busy for client in clients),
        "join_p50_ms": 1000 * percentile(join_latencies, 0.5),
        "join_p99_ms": 1000 * percentile(join_latencies, 0.99),
        "burst_relays": len(burst), "burst_relays_per_s": len(burst) / burst_s,
        "burst_p50_ms": 1000 * percentile(burst, 0.5),
        "burst_p99_ms": 1000 * percentile(burst, 0.99),
        "paced_relays": len(paced), "paced_relays_per_s": len(paced) / paced_s,
        "paced_p50_ms": 1000 * percentile(paced, 0.5),
        "paced_p99_ms": 1000 * percentile(paced, 0.99),
        "leaves_per_s": joins / sum(leave_s),
        "health_when_full": occupied, "server_memory_kib": memory, "server_cpu_s": cpu,
    }


def report(f: dict) -> str:
    lines = [
        f"| clients / rooms | {f['clients']} / {f['rooms']} ({f['cycles']} cycles: all join, "
        f"{f['rounds']} burst + {f['paced_rounds']} paced relay rounds, all leave; "
        f"compression {f['compression']}) |",
        "| --- | --- |",
        f"| connect all | {f['connect_s']:.2f} s |",
        f"| joins | {f['joins']} at {f['joins_per_s']:.0f} joins/s (join round trip "
        f"p50 {f['join_p50_ms']:.0f} ms, p99 {f['join_p99_ms']:.0f} ms; refused as busy "
        f"and tried again: {f['busy']}) |",
        f"| relays in bursts (all clients at once) | {f['burst_relays']} at "
        f"{f['burst_relays_per_s']:.0f}/s; latency p50 {f['burst_p50_ms']:.1f} ms, "
        f"p99 {f['burst_p99_ms']:.1f} ms |",
        f"| relays paced (each client within {f['spread_s']:g} s) | {f['paced_relays']} at "
        f"{f['paced_relays_per_s']:.0f}/s; latency p50 {f['paced_p50_ms']:.1f} ms, "
        f"p99 {f['paced_p99_ms']:.1f} ms |",
        f"| leaves | {f['leaves_per_s']:.0f} leaves/s |",
        f"| /health when full | `{json.dumps(f['health_when_full'])}` |",
        f"| machine load average (1 min) before, after | {f['load_average'][0]:.2f}, "
        f"{f['load_average'][1]:.2f} |",
    ]
    for phase, kib in f["server_memory_kib"].items():
        cpu = f["server_cpu_s"][phase]
        lines.append(f"| server RSS {phase} | {kib['VmRSS'] / 1024:.1f} MiB "
                     f"(peak {kib['VmHWM'] / 1024:.1f} MiB); server CPU so far {cpu:.1f} s |")
    return "\n".join(lines)


def start_server(log: list[str], command: list[str] | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """A room server (`command`, or else this script's `serve`) in a child process; its first
    log line names its URL. Its log (a line per join and leave) is read into `log` all along,
    lest a full pipe block it."""
    child = subprocess.Popen(command or [sys.executable, __file__, "serve", *SERVER_OPTIONS],
                             stderr=subprocess.PIPE, text=True)
    line = child.stderr.readline()
    if "listening on " not in line:
        child.kill()
        raise SystemExit(f"room server did not start: {line!r}")
    threading.Thread(target=lambda: log.extend(child.stderr), daemon=True).start()
    return child, line.rsplit(" ", 1)[1].strip()


def raise_file_limit() -> None:
    # Each client is a socket here and another in the server; the default soft limit is 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def drive(options: argparse.Namespace) -> None:
    if options.clients % options.rooms:
        raise SystemExit("--clients must be a multiple of --rooms")
    raise_file_limit()
    child = None
    log: list[str] = []
    url, pid = options.url, options.server_pid
    if url is None:
        child, url = start_server(log)
        pid = child.pid
    elif urlsplit(url).hostname not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("--url must be on loopback")
    load_before = os.getloadavg()[0]
    try:
        figures = asyncio.run(asyncio.wait_for(run_load(url, options, pid), options.time_limit))
    finally:
        if child is not None:
            child.terminate()  # SIGTERM: the graceful shutdown
            child.wait(timeout=30)
    # Other work on the machine skews every figure; the 1-minute load average tells.
    figures["load_average"] = [load_before, os.getloadavg()[0]]
    figures["server_log_lines"] = len(log)
    # The server logs what it refuses and any exception; this load should cause neither.
    figures["server_log_problems"] = [line for line in log if not _ROUTINE.search(line)]
    print(report(figures))
    print(json.dumps(figures))


def serve(options: argparse.Namespace) -> None:
    raise_file_limit()
    setup_logging("text")
    asyncio.run(serve_until_signal(RoomServer("127.0.0.1", 0, limits=limits_from(options))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    server = commands.add_parser("serve", help="run the room server (the child process)")
    add_limit_arguments(server)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=250)
    parser.add_argument("--cycles", type=int, default=2, help="join, relay, leave cycles")
    parser.add_argument("--rounds", type=int, default=5,
                        help="burst relay rounds per cycle: every member signals every other "
                        "once, all clients at the same moment")
    parser.add_argument("--paced-rounds", type=int, default=3,
                        help="paced relay rounds per cycle: each client sends at a random "
                        "moment within --spread seconds")
    parser.add_argument("--spread", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate",
                        help="what the clients offer (browsers and websockets offer deflate)")
    parser.add_argument("--room-prefix", default="load-", help="room names: this and a number")
    parser.add_argument("--url", help="drive this running room server (loopback only)")
    parser.add_argument("--server-pid", type=int, help="the --url server's pid, for its memory")
    parser.add_argument("--time-limit", type=float, default=300, metavar="SECONDS")
    options = parser.parse_args()
    if options.command == "serve":
        serve(options)
    else:
        drive(options)


if __name__ == "__main__":
    main()
