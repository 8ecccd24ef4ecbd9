"""The end of a party process: it freezes what it imported (no collection walks those objects
again, nor the last one at exit), and the program's own garbage is still finalized at exit."""

from __future__ import annotations

import pytest

from helpers import mpc_net

# Leaves behind an object in a reference cycle: only a collection finalizes it, at the latest
# the interpreter's last one at exit.
PROGRAM = """
import gc, os
from mpyc.runtime import mpc


class Goodbye:
    def __del__(self):
        os.write(2, f"goodbye from party {mpc.pid}\\n".encode())


async def main():
    await mpc.start()
    total = await mpc.output(mpc.sum(mpc.input(mpc.SecInt()(mpc.pid + 1))))
    print(f"total {total}, frozen {gc.get_freeze_count() > 0}, collecting {gc.isenabled()}")
    await mpc.shutdown()

leftover = Goodbye()
leftover.itself = leftover
mpc.run(main())
"""


@pytest.mark.parametrize("parties", [1, 2])
def test_a_party_freezes_its_imports_and_still_finalizes_the_programs_garbage(
        parties: int, tmp_path) -> None:
    script = tmp_path / "leftover.py"
    script.write_text(PROGRAM)
    logs = tmp_path / "logs"
    done = mpc_net("run", str(script), f"-M{parties}", "--log-dir", str(logs))
    assert done.returncode == 0, done.stderr
    outputs = [done.stdout + done.stderr]
    outputs += [(logs / f"party{i}.log").read_text() for i in range(1, parties)]
    for pid, output in enumerate(outputs):
        # Frozen before the program ran, and collecting again (off while the party imported).
        assert f"total {parties * (parties + 1) // 2}, frozen True, collecting True" in output
        assert f"goodbye from party {pid}" in output
