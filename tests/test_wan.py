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
    (["--baseline", "/nonexistent"], "--baseline: no mpc-net checkout in /nonexistent"),
    (["--tcp-congestion", "nosuch"], "--tcp-congestion nosuch: "),
])
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = wan(*args, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_run_across_20_ms_compares_tcp_and_mpc_net(tmp_path) -> None:
    results = tmp_path / "wan.json"
    done = wan("--condition", "rtt=20", "--condition", "rtt=0,bw=20,loss=2",
               "--program", "demos/auction.py", "--reps", "1", "--json", str(results),
               "--tcp-congestion", "cubic")  # Linux's default, whatever this machine's is
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(results.read_text())
    assert {f["tcp_congestion"] for f in figures} == {"cubic"}
    assert "TCP's congestion control: cubic" in done.stdout
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


def test_tcp_runs_use_the_chosen_congestion_control_on_every_socket(tmp_path) -> None:
    """wan.py runs MPyC's TCP parties through harness/tcp_congestion.py: the program runs as
    `__main__` with its own arguments, and its sockets, made or accepted, use the choice."""
    program = tmp_path / "program.py"
    program.write_text(
        "import socket, sys\n"
        "def used(s): return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)"
        ".rstrip(b'\\0').decode()\n"
        "listener = socket.create_server(('127.0.0.1', 0))\n"
        "client = socket.create_connection(listener.getsockname())\n"
        "accepted, _ = listener.accept()\n"
        "print(__name__, sys.argv[1:], used(listener), used(client), used(accepted))\n")
    wrapper = ROOT / "benchmarks" / "harness" / "tcp_congestion.py"
    done = subprocess.run([sys.executable, str(wrapper), "reno", str(program), "-M1", "x"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["__main__", "['-M1',", "'x']", "reno", "reno", "reno"]


def test_a_baseline_checkout_runs_as_a_third_variant(tmp_path) -> None:
    """--baseline runs the parties of another checkout, interleaved: here a copy of this one
    whose party program says where it was imported from."""
    baseline = tmp_path / "before"
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    baseline.mkdir()
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    marker = "import sys; print('baseline mpc_net', file=sys.stderr)\n"
    package = baseline / "mpc_net" / "__main__.py"
    package.write_text(marker + package.read_text())
    results = tmp_path / "wan.json"
    # A capped link: its label ("10 ms, 50 Mbit/s") names the kept packet trace too.
    done = wan("--condition", "rtt=10,bw=50", "--program", "demos/auction.py", "--reps", "1",
               "--baseline", str(baseline), "--json", str(results), "--keep", str(tmp_path / "k"))
    assert done.returncode == 0, done.stderr[-3000:]
    (figure,) = json.loads(results.read_text())
    assert figure["baseline_s"] > 0.1 and figure["baseline_ratio"] is not None, figure
    assert figure["mpc_net_s"] > 0.1 and figure["ratio"] is not None, figure
    kept = {path.name: path.read_text() for path in (tmp_path / "k").glob("*.out")}
    assert all("baseline mpc_net" in text for name, text in kept.items() if "-baseline-" in name)
    assert sum("-baseline-" in name for name in kept) == 3, sorted(kept)
    assert not any("baseline mpc_net" in text for name, text in kept.items()
                   if "-baseline-" not in name)
    assert "| baseline elapsed s | baseline ratio |" in done.stdout
    assert [path.name for path in (tmp_path / "k").glob("packets-*")] == [
        "packets-10ms,50Mbit-s.log"]
