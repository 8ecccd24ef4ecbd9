"""Local mode: an embedded room server on loopback and every party as its own process."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from .auth import Roster
from .native.identity import FileIdentity, write_roster
from .signaling.server import RoomServer
from .stats import party_file

logger = logging.getLogger("mpc_net.local")

LOG_TAIL_LINES = 15  # of a failed party's output, shown on this terminal


async def run_local(script: str, script_args: list[str], parties: int, party_options: list[str],
                    log_dir: str | None, grace: float, stats_json: str | None = None) -> int:
    """Run all parties; party 0 writes to this stdout, the others to log files.

    Returns 0 if every party succeeded. After the first failure the others get `grace`
    seconds to notice it themselves (they report the lost party) before they are stopped.
    The last lines of a failed party's log are shown; `logs` is a new temporary directory,
    removed at the end, unless `log_dir` is given. The throwaway keys are always removed.
    With `stats_json`, every party writes its own run report (stats.party_file).
    """
    logs = Path(log_dir or tempfile.mkdtemp(prefix="mpc-net-"))
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="mpc-net-keys-") as keys:
            credentials = _throwaway_credentials(Path(keys), parties)
            own = credentials if stats_json is None else [
                [*c, "--stats-json", party_file(stats_json, i)] for i, c in enumerate(credentials)]
            return await _run_parties(script, script_args, parties, party_options, own,
                                      logs, log_dir is not None, grace)
    finally:
        if log_dir is None:
            shutil.rmtree(logs, ignore_errors=True)


async def _run_parties(script: str, script_args: list[str], parties: int,
                       party_options: list[str], own: list[list[str]], logs: Path,
                       kept: bool, grace: float) -> int:
    room = f"local-{secrets.token_hex(4)}"
    async with RoomServer("127.0.0.1", 0) as server:
        procs: dict[int, asyncio.subprocess.Process] = {}
        try:
            for i in range(parties):
                command = [sys.executable, "-m", "mpc_net", "run", "-M", str(parties), "-I", str(i),
                           "--room", room, "--signal", server.url, *party_options,
                           *own[i],  # its key and roster, and its report file
                           # The second `--`: every argument after it is the program's.
                           "--", script, "--", *script_args]
                if i == 0:
                    procs[i] = await asyncio.create_subprocess_exec(*command)
                    continue
                path = logs / f"party{i}.log"
                with open(path, "wb") as log:
                    procs[i] = await asyncio.create_subprocess_exec(
                        *command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                        stderr=asyncio.subprocess.STDOUT)
            if parties > 1:
                logger.info("local mode: %d parties in room %s; output of parties 1-%d in %s%s",
                            parties, room, parties - 1, logs / "party<i>.log",
                            "" if kept else " (removed at exit; keep it with --log-dir)")
            return await _supervise(procs, logs, grace)
        finally:
            for proc in procs.values():
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


def _throwaway_credentials(keys: Path, parties: int) -> list[list[str]]:
    """Fresh keys and a roster for this run only: authenticated channels with no setup.

    `keys` is a new directory of their own (mode 0700), never the log directory, which may be
    shared and hold links planted to redirect the writes.
    """
    identities = [FileIdentity.generate() for _ in range(parties)]
    roster_file = keys / "roster.json"
    write_roster(Roster.of([i.public_key for i in identities]), roster_file)
    options = []
    for i, identity in enumerate(identities):
        key_file = keys / f"party{i}.key"
        identity.save(key_file)
        options.append(["--key", os.fspath(key_file), "--roster", os.fspath(roster_file)])
    return options


async def _supervise(procs: dict[int, asyncio.subprocess.Process], logs: Path,
                     grace: float) -> int:
    waits = {asyncio.ensure_future(proc.wait()): i for i, proc in procs.items()}
    failed: list[int] = []
    deadline: float | None = None
    loop = asyncio.get_running_loop()
    while waits:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            for i in waits.values():
                logger.error("party %d still running %.0f s after a failure; stopping it", i,
                             grace)
                failed.append(i)
            break
        for task in done:
            i = waits.pop(task)
            if task.result() != 0:
                failed.append(i)
                if deadline is None:
                    deadline = loop.time() + grace
    for i in sorted(set(failed)):
        code = procs[i].returncode
        status = f"exit code {code}" if code is not None else "stopped"
        if i == 0:
            logger.error("party 0 failed (%s); its output is above", status)
            continue
        path = logs / f"party{i}.log"
        logger.error("party %d failed (%s); the last lines of its output (%s):\n%s", i, status,
                     path, _last_lines(path))
    return 1 if failed else 0


def _last_lines(path: Path, count: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-count:]
    except OSError as exc:
        return f"  (cannot read it: {exc.strerror})"
    return "\n".join(f"  | {line}" for line in lines) or "  (empty)"
