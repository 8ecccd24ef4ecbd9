"""The WAN benchmark (benchmarks/wan.py): its emulated network delays, caps and loses what it
says, and a run compares MPyC's TCP with mpc-net across it. Needs root or user namespaces, as
the NAT tests do."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT

RUN = ROOT / "benchmarks" / "wan.py"


def wan(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--condition", "rtt=fast"], "not a condition: 'rtt=fast'"),
    (["--condition", "rtt=10,jitter=2"], "not a condition"),
    (["--condition", "rtt=10,loss=100"], "not a condition"),
    (["--program", "no/such/program.py"], "no such program"),
    (["--reps", "0"], "--reps must be at least 1"),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = wan(*args, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_run_across_20_ms_compares_tcp_and_mpc_net(tmp_path) -> None:
    results = tmp_path / "wan.json"
    done = wan("--condition", "rtt=20", "--condition", "rtt=0,bw=20,loss=2",
               "--program", "demos/auction.py", "--reps", "1", "--json", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(results.read_text())
    assert [f["label"] for f in figures] == ["20 ms", "0 ms, 20 Mbit/s, 2 % loss"]
    delayed, lossy = figures
    log = done.stderr[-3000:]  # the progress lines, and a failed party's output
    # The emulator adds well under a millisecond of its own to each round trip.
    assert 20 <= delayed["measured_rtt_ms"] < 24, log
    assert lossy["measured_rtt_ms"] < 4, log
    # MPyC's own elapsed time: auction.py needs dozens of round trips.
    assert delayed["tcp_s"] > 0.2 and delayed["mpc_net_s"] > 0.2, log
    for figure in figures:
        assert figure["ratio"] is not None, log
        assert figure["lost_packets"] > 0 if figure is lossy else figure["lost_packets"] == 0
    assert "| demos/auction.py |" in done.stdout and "emulator overhead ms" in done.stdout
