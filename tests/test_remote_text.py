"""Text from a peer or a room server reaches the terminal with its control characters escaped:
no escape sequence can repaint the screen or retitle it, and no line break can forge a line of
mpc-net's own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from websockets.asyncio.server import serve

from mpc_net.text import printable

from helpers import DEMOS, ROOT, make_credentials

HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202eevil\x00\nmpc-net: all parties agree"


def test_printable_escapes_control_and_format_characters_and_bounds_the_length() -> None:
    assert printable("plain text, é, 中文, ✓") == "plain text, é, 中文, ✓"
    shown = printable(HOSTILE)
    assert shown == ("\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\x00\\nmpc-net: all parties agree")
    assert shown.isprintable()
    assert printable("x" * 10_000, limit=100) == "x" * 100 + "…"


@pytest.mark.parametrize("reply", ["error", "closing"])
async def test_a_room_servers_words_are_printed_escaped(tmp_path, reply: str) -> None:
    """A room server that answers the join with an error (or a shutdown notice) of its own
    making: the party ends with one line, escaped."""
    async def hostile(ws) -> None:
        await ws.recv()  # the join
        if reply == "error":
            await ws.send(json.dumps({"type": "error", "code": "room-full\x1b[8m",
                                      "message": HOSTILE}))
        else:
            await ws.send(json.dumps({"type": "closing", "message": HOSTILE}))
        await ws.close(1000, HOSTILE[:100])

    credentials = make_credentials(tmp_path, 2)
    async with serve(hostile, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mpc_net", "run", str(DEMOS / "stats.py"), "-M2", "-I", "0",
            "--room", "r", "--signal", f"ws://127.0.0.1:{port}", *credentials[0],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode != 0 and "Traceback" not in text, text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
    assert "\\x1b]0;owned\\x07\\u202eevil\\x00\\nmpc-net: all parties agree" in text, text
    assert len(text.strip().splitlines()) == 1, text
