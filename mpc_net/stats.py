"""The run report of `mpc-net run --stats-json FILE`: one party's run as JSON.

Written once at the end of a run, whether it succeeded or not, for researchers who measure
mpc-net and for the bench harness (benchmarks/harness), which takes its figures from it rather
than from log lines. The schema is in README.md ("Run reports"); `FORMAT` names its version, and
a change that removes or renames a field changes it.

The figures are read from what the run keeps anyway (the transports' counters, the mesh's
selected paths), so asking for a report costs the run nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .auth import HANDSHAKE_VERSION
from .signaling.protocol import VERSION as SIGNALING_VERSION

if TYPE_CHECKING:
    from .mesh import Mesh

FORMAT = "mpc-net-stats/1"


class ExitReason(enum.StrEnum):
    """Why a run ended, as the report says it."""

    OK = "ok"
    PEER_LOST = "peer-lost"  # a channel failed mid-run (and was not restored in time)
    MESH_ERROR = "mesh-error"  # the parties could not all be connected and authenticated
    PROGRAM_ERROR = "program-error"  # the MPyC program raised an exception
    PROGRAM_EXIT = "program-exit"  # the program called sys.exit with a non-zero code
    INTERRUPTED = "interrupted"  # Ctrl-C


class StatsFileError(ValueError):
    """A report file that cannot be written; the text says why in one line."""


def check_writable(path: str) -> None:
    """Refuse, before the run, a FILE that the report could not be written to at its end."""
    target = Path(path)
    if target.is_dir():
        raise StatsFileError(f"--stats-json {path} is a directory, not a file")
    directory = target.parent
    if not directory.is_dir():
        raise StatsFileError(f"--stats-json {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StatsFileError(f"--stats-json {path}: directory {directory} is not writable")


def party_file(path: str, party: int) -> str:
    """Local mode's file for one party: the index before the suffix (stats.json -> stats.0.json)."""
    target = Path(path).absolute()
    return os.fspath(target.with_name(f"{target.stem}.{party}{target.suffix}"))


class RunStats:
    """Collects one party's run: told when the run starts connecting (`watch`), asked for the
    report at the end (`report`). Times are the event loop's clock, as the transports use."""

    def __init__(self, party: int, parties: int, room: str | None) -> None:
        self.party, self.parties, self.room = party, parties, room
        self._started = time.monotonic()
        self._started_at = datetime.datetime.now(datetime.UTC)
        self._mesh: Mesh | None = None
        self._connecting_since: float | None = None
        self._connect_s: float | None = None

    def watch(self, mesh: Mesh) -> Mesh:
        """The mesh of this run, about to connect (`mpc.start`)."""
        self._mesh = mesh
        self._connecting_since = asyncio.get_running_loop().time()
        return mesh

    def connected(self) -> None:
        """Every channel is open and authenticated."""
        if self._connecting_since is not None:
            self._connect_s = asyncio.get_running_loop().time() - self._connecting_since

    def report(self, reason: ExitReason, code: int, message: str | None = None,
               peer: int | None = None) -> dict:
        from mpyc import __version__ as mpyc_version

        return {
            "format": FORMAT,
            "versions": {"mpc_net": __version__, "mpyc": mpyc_version,
                         "handshake": HANDSHAKE_VERSION, "signaling": SIGNALING_VERSION},
            "party": self.party,
            "parties": self.parties,
            "room": self.room,
            "started_at": self._started_at.isoformat(timespec="milliseconds"),
            "elapsed_s": time.monotonic() - self._started,
            "connect_s": self._connect_s,
            "exit": {"reason": reason.value, "code": code, "message": message, "peer": peer},
            "peers": [self._peer(j) for j in range(self.parties) if j != self.party],
        }

    def _peer(self, j: int) -> dict:
        transport = self._mesh.transports.get(j) if self._mesh is not None else None
        if transport is None:  # never authenticated (or the run never started connecting)
            return {"party": j, "connected": False, "path": None, "connect_s": None,
                    "round_trip_ms": None, "mpyc_messages_sent": 0, "mpyc_bytes_sent": 0,
                    "mpyc_bytes_received": 0, "channel_messages_sent": 0, "channels_used": 0}
        path = self._mesh.paths.get(j)
        trips = [t * 1000 for t in transport.round_trips]
        return {
            "party": j,
            "connected": True,
            "path": {"local": path[0], "remote": path[1]} if path else None,
            "connect_s": (transport.linked_at - self._connecting_since
                          if transport.linked_at is not None
                          and self._connecting_since is not None else None),
            "round_trip_ms": {"min": min(trips), "median": statistics.median(trips),
                              "max": max(trips), "samples": len(trips)} if trips else None,
            "mpyc_messages_sent": transport.mpyc_writes,
            "mpyc_bytes_sent": transport.bytes_written,
            "mpyc_bytes_received": transport.received,
            "channel_messages_sent": transport.messages_sent,
            "channels_used": transport.channels_used,
        }


def write(path: str, report: dict) -> None:
    """Write `report` to `path` whole or not at all, so a reader never sees half a file."""
    import tempfile  # with shutil, bz2 and lzma: only for a run report, not at every start

    target = Path(path)
    fd, staging = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
