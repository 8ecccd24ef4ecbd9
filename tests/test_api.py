"""The Python API: `mpc_net.setup` makes a process's own `mpc` a party of a room."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mpc_net

from helpers import ROOT, RoomServerProcess, make_credentials, program_lines
from helpers import mpc_net as mpc_net_command

# A program that drives `mpc` itself, as MPyC scripts do; its party comes from argv[1].
SCRIPT = """\
import sys

import mpc_net
from mpyc.runtime import mpc

i, signal, room, key, roster = int(sys.argv[1]), *sys.argv[2:6]
mpc_net.setup(3, i, room=room, signal=signal, key=key, roster=roster, threshold=0)


async def main():
    await mpc.start()
    secint = mpc.SecInt()
    inputs = mpc.input(secint(10 * (i + 1)))
    print("party", mpc.pid, "of", len(mpc.parties), "sum", await mpc.output(mpc.sum(inputs)))
    print("threshold", mpc.threshold, "portable", mpc.options.mix32_64bit)
    await mpc.shutdown()


mpc.run(main())
"""

# The same in cells, as a notebook runs them: inside the kernel's running event loop, with
# top-level await (compiled as IPython does, with PyCF_ALLOW_TOP_LEVEL_AWAIT).
CELLS = [
    """\
import sys

import mpc_net
from mpyc.runtime import mpc
""",
    """\
# A notebook is no file to hash: the parties name the program they agree on.
mpc_net.setup(3, int(sys.argv[1]), room=sys.argv[3], signal=sys.argv[2], key=sys.argv[4],
              roster=sys.argv[5], program="the sum notebook, cells 1-4")
await mpc.start()
secint = mpc.SecInt()
""",
    """\
inputs = mpc.input(secint(10 * (mpc.pid + 1)))
total = await mpc.output(mpc.sum(inputs))
print("party", mpc.pid, "of", len(mpc.parties), "sum", total)
print("threshold", mpc.threshold, "portable", mpc.options.mix32_64bit)
""",
    "await mpc.shutdown()\n",
]

NOTEBOOK = f"""\
import ast
import asyncio

CELLS = {CELLS!r}


async def kernel():
    namespace = {{"__name__": "__main__"}}
    for cell in CELLS:
        code = compile(cell, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            await result


asyncio.run(kernel())
"""


def _run_three(tmp_path: Path, program: str) -> list[subprocess.CompletedProcess]:
    path = tmp_path / "program.py"
    path.write_text(program)
    credentials = make_credentials(tmp_path, 3)
    server = RoomServerProcess()
    try:
        procs = [subprocess.Popen(
            [sys.executable, str(path), str(i), server.url, "api-room",
             credentials[i][1], credentials[i][3]],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(3)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return results
    finally:
        server.close()


@pytest.mark.parametrize("program", [SCRIPT, NOTEBOOK], ids=["script", "notebook"])
def test_three_parties_in_process(tmp_path: Path, program: str) -> None:
    # MPyC's default threshold for 3 parties is 1; the script asks for 0.
    threshold = "threshold 0" if program == SCRIPT else "threshold 1"
    for i, done in enumerate(_run_three(tmp_path, program)):
        assert done.returncode == 0, done.stderr
        assert program_lines(done.stdout)[0] == f"party {i} of 3 sum 60", done.stdout
        assert program_lines(done.stdout)[1:] == [f"{threshold} portable True"]
        assert "connected to all 2 peers" in done.stdout + done.stderr


@pytest.mark.parametrize("kwargs, cli", [
    (dict(parties=3, index=3, room="r", signal="ws://127.0.0.1:9", trust_room_server=True),
     ["-M3", "-I", "3", "--room", "r", "--signal", "ws://127.0.0.1:9", "--trust-room-server"]),
    (dict(parties=3, index=0, room="bad room!", signal="ws://127.0.0.1:9",
          trust_room_server=True),
     ["-M3", "-I", "0", "--room", "bad room!", "--signal", "ws://127.0.0.1:9",
      "--trust-room-server"]),
    (dict(parties=3, index=0, room="r", signal="http://127.0.0.1:9", trust_room_server=True),
     ["-M3", "-I", "0", "--room", "r", "--signal", "http://127.0.0.1:9",
      "--trust-room-server"]),
    (dict(parties=3, index=0, room="r", signal="ws://127.0.0.1:9"),
     ["-M3", "-I", "0", "--room", "r", "--signal", "ws://127.0.0.1:9"]),
    (dict(parties=3, index=0, room="r", signal="ws://127.0.0.1:9", trust_room_server=True,
          ice=["stun:[::1]:3478"]),
     ["-M3", "-I", "0", "--room", "r", "--signal", "ws://127.0.0.1:9", "--trust-room-server",
      "--ice", "stun:[::1]:3478"]),
])
def test_same_errors_as_the_command(kwargs: dict, cli: list[str]) -> None:
    """Checked before MPyC is touched, with the message `mpc-net run` prints."""
    with pytest.raises(mpc_net.ConfigError) as raised:
        mpc_net.setup(**kwargs)
    done = mpc_net_command("run", "demos/auction.py", *cli)
    assert done.returncode == 2
    assert f"mpc-net run: error: {raised.value} (see" in done.stderr


LOSES_PARTY_1 = """\
import os
import sys

import mpc_net
from mpyc.runtime import mpc

i, signal, room, key, roster = int(sys.argv[1]), *sys.argv[2:6]
mpc_net.setup(3, i, room=room, signal=signal, key=key, roster=roster, peer_timeout=3)
mpc.run(mpc.start())
if mpc.pid == 1:
    os._exit(3)  # gone without a word
secint = mpc.SecInt()
print("sum", mpc.run(mpc.output(mpc.sum(mpc.input(secint(1))))))
"""


def test_a_script_that_loses_a_party_ends(tmp_path: Path) -> None:
    """As under `mpc-net run`: the error is reported and the script ends, never waits."""
    party0, party1, party2 = _run_three(tmp_path, LOSES_PARTY_1)
    assert party1.returncode == 3
    for done in (party0, party2):
        assert done.returncode != 0
        assert "lost the connection to party 1" in done.stdout + done.stderr
        assert not any(line.startswith("sum") for line in program_lines(done.stdout))


REFUSALS = """\
import mpc_net

for index, threshold in ((0, None), (1, 2)):
    try:
        mpc_net.setup(3, index, room="r", signal="ws://127.0.0.1:9", trust_room_server=True,
                      threshold=threshold)
    except mpc_net.ConfigError as exc:
        print("refused:", exc)
"""


def test_what_mpyc_was_told_on_the_command_line_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "refusals.py"
    path.write_text(REFUSALS)
    done = subprocess.run([sys.executable, str(path), "-M3", "-I1"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == [
        "refused: MPyC was set up as party 1 of 3 (-M, -I on the command line), not as party "
        "0 of 3",
        "refused: -T: threshold 2 too large for 3 parties"]


NO_FILE = """\
import mpc_net

for program in (None, 3):
    try:
        mpc_net.setup(3, 0, room="r", signal="ws://127.0.0.1:9", trust_room_server=True,
                      program=program)
    except mpc_net.ConfigError as exc:
        print("refused:", exc)
"""


def test_a_program_that_is_no_file_must_name_its_text() -> None:
    """Without a file to hash (a notebook, `python -c`), parties pass the program's text."""
    done = subprocess.run([sys.executable, "-c", NO_FILE], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == [
        "refused: this program is not a file (a notebook? python -c?): pass its text, the same "
        "on every party, as program=... so that the parties can check that they run the same "
        "program",
        "refused: program must be the program's text (str or bytes), not int"]
