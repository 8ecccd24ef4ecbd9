"""The start and the end of a party process: what it imports, and an exit that skips walking
the imported objects but keeps the program's own finalization (files it left open)."""

from __future__ import annotations

from helpers import mpc_net

# Leaves its file open, reachable only from its module's globals (a cycle with `note`): the
# interpreter's last collection at exit is what flushes it.
PROGRAM = """
import gc, sys
from mpyc.runtime import mpc

out = open(f"{sys.argv[1]}.{mpc.pid}", "w")


def note(line):
    out.write(line + "\\n")


async def main():
    await mpc.start()
    total = await mpc.output(mpc.sum(mpc.input(mpc.SecInt()(mpc.pid + 1))))
    note(f"frozen {gc.get_freeze_count() > 0}")
    for i in range(100):
        note(f"{i} {total}")
    await mpc.shutdown()

mpc.run(main())
"""


def test_files_a_program_leaves_open_are_complete_after_a_local_run(tmp_path) -> None:
    script = tmp_path / "leave_open.py"
    script.write_text(PROGRAM)
    done = mpc_net("run", str(script), "-M2", str(tmp_path / "out"), "--log-dir",
                   str(tmp_path / "logs"))
    assert done.returncode == 0, done.stderr
    for pid in (0, 1):
        lines = (tmp_path / f"out.{pid}").read_text().splitlines()
        # The party froze what it had imported before running the program (a shorter exit).
        assert lines[0] == "frozen True"
        assert lines[1:] == [f"{i} 3" for i in range(100)]
