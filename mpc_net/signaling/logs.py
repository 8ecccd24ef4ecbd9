"""The room server's log: its logger, the fields of its events, and text or JSON lines.

Every record the server logs names an event (`extra`), so that log collectors can count and
filter them without parsing the wording of messages meant for people.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("mpc_net.signaling")


def event(name: str, client: object | None = None, **fields: object) -> dict[str, object]:
    """The `extra` of a log record: what JsonFormatter adds to the line as fields."""
    if client is not None:
        fields["client"] = str(client)
    return {"event": name, **fields}


def setup_logging(log_format: str = "text", verbose: bool = False) -> None:
    """Log to stderr as `mpc-net signal` does: text lines, or JSON objects with --log-format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("websockets").setLevel(logging.WARNING)


# Attributes of every LogRecord; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields
    (event, client, room, party, code, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # json.dumps escapes newlines, so a traceback stays on its one line.
        return json.dumps(entry, default=str)
