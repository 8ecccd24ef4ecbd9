"""Local mode: the embedded room server and m processes on one machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from helpers import DEMOS, GIVES_UP_ON_PARTY_1, ROOT, mpc_net, mpyc_tcp, program_lines

SUMMARY = re.compile(r"party \d+ -> party \d+: path .*, (\d+) MPyC messages")


def test_burst_of_100000_small_messages(tmp_path) -> None:
    """Thousands of secure comparisons at once: >= 100,000 MPyC messages, right result."""
    done = mpc_net("run", str(DEMOS / "comparisons.py"), "-M3", "--log-dir", str(tmp_path),
                   "--stats-json", str(tmp_path / "stats.json"), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Matches the plaintext computation: True" in program_lines(done.stdout)
    summaries = done.stderr + "".join(p.read_text() for p in tmp_path.glob("party*.log"))
    sent = [int(n) for n in SUMMARY.findall(summaries)]
    assert len(sent) == 6, summaries  # every party reports on each of its two peers
    assert sum(sent) >= 100_000
    # The run reports count the same.
    reports = [json.loads((tmp_path / f"stats.{i}.json").read_text()) for i in range(3)]
    assert sum(p["mpyc_messages_sent"] for r in reports for p in r["peers"]) == sum(sent)


def test_machine_whose_only_interface_is_loopback() -> None:
    """aioice offers no 127.0.0.1 candidate by itself; local mode must work with only `lo`."""
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, "-M3")
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is needed for this test"
    # A new network namespace holding nothing but `lo` (root is mapped: no privileges needed).
    done = subprocess.run(
        [unshare, "--net", "--map-root-user", "sh", "-c",
         'ip link set lo up && [ "$(ip -o link show | wc -l)" = 1 ] && '
         f'exec "{sys.executable}" -m mpc_net run "{script}" -M3'],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == expected


def test_failing_party_fails_the_run(tmp_path) -> None:
    """A program that raises on one party: non-zero exit, and the report names that party."""
    script = tmp_path / "fails_on_party_1.py"
    script.write_text(GIVES_UP_ON_PARTY_1)
    done = mpc_net("run", str(script), "-M3", "--log-dir", str(tmp_path), "--peer-timeout", "3")
    assert done.returncode == 1
    assert re.search(r"party 1 failed .*party1\.log", done.stderr), done.stderr
    assert "party 1 gives up" in (tmp_path / "party1.log").read_text()
    assert "| party 1 gives up" in done.stderr  # the end of its log, shown here


LOGS = re.compile(r"output of parties 1-\d+ in (\S+)/party<i>\.log \(removed at exit")


def test_temporary_directory_is_removed_and_a_failure_explained(tmp_path) -> None:
    script = tmp_path / "fails_on_party_2.py"
    script.write_text(
        "from mpyc.runtime import mpc\n"
        "mpc.run(mpc.start())\n"
        "if mpc.pid == 2:\n"
        "    raise SystemExit('party 2 gives up')\n"
        "mpc.run(mpc.shutdown())\n")
    done = mpc_net("run", str(script), "-M3", "--peer-timeout", "3")
    assert done.returncode == 1
    logs = LOGS.search(done.stderr)
    assert logs, done.stderr
    assert not os.path.exists(logs.group(1))  # keys and logs are gone ...
    assert "party 2 failed" in done.stderr and "\n  | party 2 gives up\n" in done.stderr
    done = mpc_net("run", str(DEMOS / "auction.py"), "-M2")
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(LOGS.search(done.stderr).group(1))  # ... after a success too
