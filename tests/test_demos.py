"""Every demo prints the same over WebRTC as over MPyC's own TCP transport, for m = 2, 3, 5."""

from __future__ import annotations

import pytest

from helpers import DEMOS, mpc_net, mpyc_tcp, program_lines

DEMO_RUNS = {
    "secretsanta": [],
    "auction": [],
    "stats": [],
    "sort": [],
    "comparisons": ["200"],  # the full burst (N = 2000) has its own test in test_local.py
}


@pytest.mark.parametrize("parties", [2, 3, 5])
@pytest.mark.parametrize("demo", sorted(DEMO_RUNS))
def test_demo_matches_tcp(demo: str, parties: int, tmp_path) -> None:
    script = DEMOS / f"{demo}.py"
    args = [*DEMO_RUNS[demo], f"-M{parties}"]
    expected = mpyc_tcp(script, *args)
    assert expected, "the TCP run printed nothing to compare"

    done = mpc_net("run", str(script), *args, "--log-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == expected
    # Every other party computed the same result (their output is in the log files).
    for i in range(1, parties):
        log = (tmp_path / f"party{i}.log").read_text()
        lines = [ln for ln in program_lines(log) if not ln.startswith("mpc-net: ")]
        assert lines == expected, f"party {i}"


def test_mpyc_flags_pass_through(tmp_path) -> None:
    script = DEMOS / "stats.py"
    args = ["-M3", "--no-prss", "-T0", "-L", "40"]
    expected = mpyc_tcp(script, *args)
    done = mpc_net("run", str(script), *args)
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == expected
    assert "Use of PRSS (pseudorandom secret sharing) disabled." in done.stdout
