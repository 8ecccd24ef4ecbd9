"""Load on room-server processes that share rooms through Redis.

    PYTHONPATH=. python benchmarks/cluster_load.py [--processes 4] [--clients 2000] [--rooms 500]
                                                   [--generators 1]

starts a redis-server on a loopback port of its own and `mpc-net signal --redis` processes, then
runs signaling_load.py's workload (all join, relay rounds in bursts and paced, all leave) with
client i connected to process i mod N, so that every room spans processes: the worst case, where
every join and relayed signal crosses Redis. It reports that script's figures plus the peak
memory and CPU time of each room-server process and of redis-server. A script, not a test.

One Python process cannot drive many thousands of clients and still answer the room servers'
pings in time; `--generators K` splits the clients (and rooms) over K processes that run the
workload at the same moment. Their rates are then summed, and the latency percentiles given are
the median of the generators' p50 and the largest of their p99.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import signaling_load as load  # noqa: E402
from redis_server import RedisServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_room_server(redis: str, log: list[str]) -> tuple[subprocess.Popen, str]:
    # Connecting thousands of clients before the join wave takes longer than --seat-timeout.
    return load.start_server(log, [sys.executable, "-m", "mpc_net", "signal", "--port", "0",
                                   "--redis", redis, "--seat-timeout", "0",
                                   *load.SERVER_OPTIONS])


def spread_connections(urls: list[str]) -> None:
    """Make signaling_load's clients connect to the processes in turn."""
    turn = itertools.count()
    connect = load.connect
    load.connect = lambda _url, **options: connect(urls[next(turn) % len(urls)], **options)


def generate(urls: list[str], options: argparse.Namespace) -> dict:
    """This process's share of the clients (a generator), on the processes at `urls`."""
    load.raise_file_limit()
    spread_connections(urls)
    return asyncio.run(asyncio.wait_for(load.run_load(urls[0], options, None),
                                        options.time_limit))


def run_generators(urls: list[str], options: argparse.Namespace) -> dict:
    """The workload from `options.generators` processes at once, its figures combined."""
    k = options.generators
    share = [f"--clients={options.clients // k}", f"--rooms={options.rooms // k}",
             *(f"--{name.replace('_', '-')}={getattr(options, name)}" for name in
               ("cycles", "rounds", "paced_rounds", "spread", "compression", "time_limit"))]
    children = [subprocess.Popen([sys.executable, __file__, "--worker", ",".join(urls),
                                  f"--room-prefix=g{g}-", *share], stdout=subprocess.PIPE,
                                 text=True) for g in range(k)]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise SystemExit("a load generator failed (its error is above)")
    parts = [json.loads(output) for output in outputs]
    total = {key: sum(part[key] for part in parts) for key in
             ("clients", "rooms", "joins", "joins_per_s", "busy", "burst_relays",
              "burst_relays_per_s", "paced_relays", "paced_relays_per_s", "leaves_per_s")}
    middle = {key: statistics.median(part[key] for part in parts)
              for key in ("join_p50_ms", "burst_p50_ms", "paced_p50_ms")}
    worst = {key: max(part[key] for part in parts)
             for key in ("connect_s", "join_p99_ms", "burst_p99_ms", "paced_p99_ms")}
    return {**parts[0], **total, **middle, **worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--generators", type=int, default=1, metavar="K",
                        help="client processes (several for many thousands of clients)")
    parser.add_argument("--worker", metavar="URLS", help=argparse.SUPPRESS)
    parser.add_argument("--room-prefix", default="load-", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paced-rounds", type=int, default=3)
    parser.add_argument("--spread", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--compression", choices=("deflate", "none"), default="none")
    parser.add_argument("--time-limit", type=float, default=600, metavar="SECONDS")
    options = parser.parse_args()
    if options.clients % options.rooms:
        raise SystemExit("--clients must be a multiple of --rooms")
    if options.generators < 1 or options.rooms % options.generators:
        raise SystemExit("--rooms must be a multiple of --generators")
    if options.worker:
        print(json.dumps(generate(options.worker.split(","), options)))
        return
    load.raise_file_limit()
    redis = RedisServer(free_port())
    log: list[str] = []
    servers = [start_room_server(redis.url, log) for _ in range(options.processes)]
    urls = [url for _, url in servers]
    load_before = os.getloadavg()[0]
    try:
        figures = run_generators(urls, options)
        for i, (child, _) in enumerate(servers):
            kib = load.rss_kib(child.pid)
            figures[f"process {i}"] = (f"peak RSS {kib['VmHWM'] / 1024:.1f} MiB, "
                                       f"CPU {load.cpu_seconds(child.pid):.1f} s")
        pid = redis.proc.pid
        figures["redis-server"] = (f"peak RSS {load.rss_kib(pid)['VmHWM'] / 1024:.1f} MiB, "
                                   f"CPU {load.cpu_seconds(pid):.1f} s")
    except SystemExit:  # a generator failed: what the room servers said may tell why
        print("\n".join(line for line in log if not load._ROUTINE.search(line))[-3000:])
        raise
    finally:
        for child, _ in servers:
            child.terminate()
        for child, _ in servers:
            child.wait(timeout=30)
        redis.stop()
    figures["load_average"] = [load_before, os.getloadavg()[0]]
    figures["server_memory_kib"], figures["server_cpu_s"] = {}, {}
    print(load.report(figures))
    for name in [*(f"process {i}" for i in range(options.processes)), "redis-server"]:
        print(f"| {name} | {figures[name]} |")
    problems = [line for line in log if not load._ROUTINE.search(line)]
    print(json.dumps({**figures, "server_log_problems": problems[:20]}))


if __name__ == "__main__":
    main()
