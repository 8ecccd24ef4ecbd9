"""Run an MPyC program with a chosen TCP congestion control on each of its TCP sockets
(wan.py's `--tcp-congestion`).

    python benchmarks/harness/tcp_congestion.py NAME PROGRAM [ARGS...]

Linux lets a network namespace other than the first choose only the congestion controls that
the machine lists in `net.ipv4.tcp_allowed_congestion_control`, where a socket of a process
with CAP_NET_ADMIN may choose any (TCP_CONGESTION); a connection accepted by a listening
socket keeps the listener's. MPyC's own code is left as it is: only the socket class is
wrapped, before the program runs as `__main__`.
"""

from __future__ import annotations

import os
import runpy
import socket
import sys


def use(name: str) -> None:
    """Every TCP socket this process makes from now on uses congestion control `name`."""
    algorithm = name.encode()
    make = socket.socket.__init__

    def init(self: socket.socket, family: int = -1, type: int = -1, proto: int = -1,
             fileno: int | None = None) -> None:
        make(self, family, type, proto, fileno)
        if fileno is None and self.type == socket.SOCK_STREAM \
                and self.family in (socket.AF_INET, socket.AF_INET6):
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm)

    socket.socket.__init__ = init  # type: ignore[method-assign]


def check(name: str) -> str | None:
    """Why `name` cannot be used here (None: it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
        except OSError as exc:
            return exc.strerror
    return None


def main() -> None:
    name, program, *args = sys.argv[1:]
    use(name)
    sys.argv = [program, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(program))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
