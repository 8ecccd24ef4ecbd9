"""Room-server processes sharing rooms through a redis-server of the test's own."""

from __future__ import annotations

import socket
import subprocess
import time

from helpers import RoomServerProcess, free_base_port, program_lines


class RedisServer:
    """redis-server on 127.0.0.1 at a port of its own, without persistence."""

    def __init__(self) -> None:
        self.port = free_base_port(1)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "no redis-server"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def shared_room_server(redis: RedisServer, *options: str) -> RoomServerProcess:
    return RoomServerProcess(0, "--redis", redis.url, *options)


def check_outputs(procs: list[subprocess.Popen], expected: list[str]) -> None:
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"party {i}: {err}"
        assert program_lines(out) == expected, f"party {i}"
