"""Text from elsewhere (a peer, a room server) made safe to print or log."""

from __future__ import annotations

MAX_REMOTE_CHARS = 500


def printable(text: str, limit: int = MAX_REMOTE_CHARS) -> str:
    """`text` with every control or format character (terminal escape sequences, line breaks,
    bidirectional overrides) shown as a Python escape, cut to `limit` characters: a peer or room
    server cannot drive the terminal or forge log lines through what mpc-net prints."""
    import unicodedata  # (a large table; only for what a peer or room server sent)

    if len(text) > limit:
        text = text[:limit] + "…"
    return "".join(c if unicodedata.category(c)[0] != "C" else ascii(c)[1:-1] for c in text)
