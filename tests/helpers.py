"""Running MPyC programs over MPyC's own TCP and over mpc-net, and comparing what they print."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMOS = ROOT / "demos"

# MPyC logs to stdout with a timestamp; elapsed times and byte counts differ between runs.
_MPYC_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


# An MPyC program that ends with an error on party 1 once all parties are connected.
GIVES_UP_ON_PARTY_1 = """\
from mpyc.runtime import mpc
mpc.run(mpc.start())
if mpc.pid == 1:
    raise SystemExit('party 1 gives up')
mpc.run(mpc.shutdown())
"""


def program_lines(stdout: str) -> list[str]:
    """What the program itself printed: stdout without MPyC's log lines."""
    return [line for line in stdout.splitlines() if not _MPYC_LOG_LINE.match(line)]


def mpc_net(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpc_net", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, **kwargs)


def free_base_port(count: int = 16) -> int:
    """A base port b with b .. b+count-1 free: MPyC's TCP parties listen on b+i, by default on
    11365+i, where two runs at once (another test, a benchmark) would meet and hang."""
    # Below the ephemeral range (Linux: 32768 and up), so that no outgoing connection takes
    # one of these ports in the meantime, and a party that connects before its peer listens
    # cannot connect to itself (TCP's simultaneous open with its own port).
    for _ in range(100):
        base = random.randrange(20000, 32768 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free range of ports for MPyC")


def mpyc_tcp(script: Path, *args: str, timeout: float = 120) -> list[str]:
    """Party 0's program output of an MPyC run over TCP (`python SCRIPT -M m ...`)."""
    done = subprocess.run([sys.executable, str(script), *args, "-B", str(free_base_port())],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return program_lines(done.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RoomServerProcess:
    """`mpc-net signal` in its own process (port 0: a free one), or another `command` that logs
    its address first as the room server does; `url` is where it listens."""

    def __init__(self, port: int = 0, *options: str, command: list[str] | None = None) -> None:
        command = command or [sys.executable, "-m", "mpc_net", "signal", "--port", str(port),
                              *options]
        self.proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()  # the server logs its address first
        # (`mpc-net web` names its pages first, then its room server.)
        match = re.search(r"(?:listening on|the room server on) (wss?://\S+)", line)
        assert match, f"room server did not start: {line!r}"
        self.url = match.group(1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stderr.close()


def make_credentials(directory: Path, parties: int) -> list[list[str]]:
    """Keys and a roster made with `mpc-net keygen` and `mpc-net roster`, as users would;
    returns the `--key ... --roster ...` options of each party."""
    public = []
    for i in range(parties):
        done = mpc_net("keygen", "--out", str(directory / f"party{i}.key"))
        assert done.returncode == 0, done.stderr
        public.append(done.stdout.strip())
    roster = directory / "roster.json"
    done = mpc_net("roster", *public, "--out", str(roster))
    assert done.returncode == 0, done.stderr
    return [["--key", str(directory / f"party{i}.key"), "--roster", str(roster)]
            for i in range(parties)]


def start_parties(script: Path, parties: int, url: str, room: str, *args: str,
                  credentials: list[list[str]], only: list[int] | None = None,
                  ) -> list[subprocess.Popen]:
    """One `mpc-net run ... -I i` process per party (or per party in `only`), as on different
    machines."""
    return [subprocess.Popen(
        [sys.executable, "-m", "mpc_net", "run", str(script), *args, f"-M{parties}", "-I", str(i),
         "--room", room, "--signal", url, *credentials[i]],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (range(parties) if only is None else only)]
