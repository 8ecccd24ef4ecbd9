"""Room-server processes sharing rooms through a redis-server of the test's own."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, RoomServerProcess, free_base_port, program_lines

sys.path.insert(0, str(ROOT / "benchmarks"))
from redis_server import RedisServer  # noqa: E402


def redis_server_here() -> RedisServer:
    """A redis-server on a port of the test's own."""
    return RedisServer(free_base_port(1))


def shared_room_server(redis: RedisServer, *options: str) -> RoomServerProcess:
    return RoomServerProcess(0, "--redis", redis.url, *options)


def check_outputs(procs: list[subprocess.Popen], expected: list[str]) -> None:
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"party {i}: {err}"
        assert program_lines(out) == expected, f"party {i}"
