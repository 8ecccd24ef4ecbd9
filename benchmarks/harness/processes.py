"""Running the processes of the bench, and what the kernel counts about them."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# The checkout: demos/, benchmarks/ and the mpc_net that is measured.
ROOT = Path(__file__).resolve().parents[2]

TCP, MPC_NET = "tcp", "mpc-net"


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Finished:
    command: list[str]
    returncode: int | None  # None: stopped at the timeout
    stdout: str
    stderr: str
    launched: float  # time.time() just before the launch, to compare with log timestamps
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        status = "timed out" if self.returncode is None else f"exit code {self.returncode}"
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        return f"{status}: {' | '.join(tail)}"


def run_process(command: list[str], cwd: Path, timeout: float) -> Finished:
    """Run to completion; the wall time is launch to exit of the process we started."""
    launched = time.time()
    start = time.perf_counter()
    # A session of its own: the parties it starts (MPyC spawns parties 1..m-1 itself) share its
    # process group, so a failed run can be cleaned up completely.
    proc = subprocess.Popen(command, cwd=cwd, env=checkout_environment(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        returncode = None
    except BaseException:  # Ctrl-C, or SIGTERM (see run): leave no parties behind
        _kill_group(proc.pid)
        raise
    wall_s = time.perf_counter() - start
    if returncode != 0:
        _kill_group(proc.pid)  # MPyC's parties 1..m-1 outlive a failed party 0
    return Finished(command, returncode, stdout, stderr, launched, wall_s)


def checkout_environment() -> dict[str, str]:
    """The environment for every process of the bench: `mpc_net` is this checkout's, whatever
    the working directory and whichever copy of mpc-net pip installed last."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def free_base_port(count: int) -> int:
    """A base port b with b..b+count-1 free now, for MPyC's `-B b`: on its default ports
    (11365+i) a TCP run could meet the parties of another MPyC run on this machine."""
    for _ in range(200):
        # Below Linux's ephemeral range (32768+), where outgoing connections take their ports.
        base = random.randrange(20000, 32000 - count)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("found no free range of TCP ports for MPyC")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("", port))  # MPyC listens on every interface
        except OSError:
            return False
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters for this network namespace: datagrams sent, and datagrams
    dropped because a receive buffer was full. WebRTC is the only UDP traffic of a run, and
    all of it stays in the namespace (loopback): what was received or dropped was sent.
    OutDatagrams counts a send call, which with UDP_SEGMENT is several datagrams."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
    except OSError:
        return {"datagrams": 0, "drops": 0}
    values = dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))
    return {"datagrams": values["InDatagrams"] + values["RcvbufErrors"],
            "drops": values["RcvbufErrors"]}

