"""Local mode: an embedded room server on loopback and every party as its own process."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

from .auth import Roster
from .keys import FileIdentity, write_roster
from .signaling.server import RoomServer

logger = logging.getLogger("mpc_net.local")


async def run_local(script: str, script_args: list[str], parties: int, party_options: list[str],
                    log_dir: str | None, grace: float) -> int:
    """Run all parties; party 0 writes to this stdout, the others to log files.

    Returns 0 if every party succeeded. After the first failure the others get `grace`
    seconds to notice it themselves (they report the lost party) before they are stopped.
    """
    logs = Path(log_dir or tempfile.mkdtemp(prefix="mpc-net-"))
    logs.mkdir(parents=True, exist_ok=True)
    credentials = _throwaway_credentials(logs, parties)
    room = f"local-{secrets.token_hex(4)}"
    async with RoomServer("127.0.0.1", 0) as server:
        procs: dict[int, asyncio.subprocess.Process] = {}
        try:
            for i in range(parties):
                command = [sys.executable, "-m", "mpc_net", "run", "-M", str(parties), "-I", str(i),
                           "--room", room, "--signal", server.url, *party_options,
                           *credentials[i],
                           "--", script, *script_args]
                if i == 0:
                    procs[i] = await asyncio.create_subprocess_exec(*command)
                    continue
                path = logs / f"party{i}.log"
                with open(path, "wb") as log:
                    procs[i] = await asyncio.create_subprocess_exec(
                        *command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                        stderr=asyncio.subprocess.STDOUT)
            if parties > 1:
                logger.info("local mode: %d parties in room %s; output of parties 1-%d in %s",
                            parties, room, parties - 1, logs / "party<i>.log")
            return await _supervise(procs, logs, grace)
        finally:
            for proc in procs.values():
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


def _throwaway_credentials(directory: Path, parties: int) -> list[list[str]]:
    """Fresh keys and a roster for this run only: authenticated channels with no setup.

    They go into a new directory of their own (mode 0700), never over files already in the
    log directory, which may be shared and hold links planted to redirect the writes.
    """
    identities = [FileIdentity.generate() for _ in range(parties)]
    keys = Path(tempfile.mkdtemp(prefix="keys-", dir=directory))
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
        where = "above" if i == 0 else os.fspath(logs / f"party{i}.log")
        code = procs[i].returncode
        status = f"exit code {code}" if code is not None else "stopped"
        logger.error("party %d failed (%s); its output: %s", i, status, where)
    return 1 if failed else 0
