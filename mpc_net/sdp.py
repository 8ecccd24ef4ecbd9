"""Facts read from session descriptions (SDP), the same for every backend."""

from __future__ import annotations

import re

# RFC 8841: a peer that does not state a limit accepts messages of at least 64 KiB.
DEFAULT_MAX_MESSAGE_SIZE = 65536

# Larger messages buy nothing on a stream transport and make each send hold the loop longer.
MESSAGE_SIZE_CAP = 256 * 1024

_MAX_MESSAGE_SIZE = re.compile(r"^a=max-message-size:(\d+)\s*$", re.MULTILINE)


def max_message_size(sdp: str) -> int:
    """The largest data channel message the author of `sdp` accepts, capped at 256 KiB."""
    match = _MAX_MESSAGE_SIZE.search(sdp)
    if match is None:
        return DEFAULT_MAX_MESSAGE_SIZE
    size = int(match.group(1))
    # RFC 8841: 0 means "any size".
    return MESSAGE_SIZE_CAP if size == 0 else min(size, MESSAGE_SIZE_CAP)


_FINGERPRINT = re.compile(r"^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


def fingerprints(sdp: str) -> str:
    """All DTLS certificate fingerprints of `sdp`, in one canonical line.

    The whole set is what gets authenticated, not one chosen hash: DTLS accepts a certificate
    that matches any listed fingerprint, so binding only the SHA-256 line would let someone in
    the middle keep the true SHA-256 line and add one of their own under another hash.
    """
    found = sorted({f"{alg.lower()} {value.upper()}" for alg, value in _FINGERPRINT.findall(sdp)})
    if not found:
        raise ValueError("the session description has no DTLS fingerprint")
    return ",".join(found)


_CANDIDATE_TYPE = re.compile(r"^a=candidate:.* typ (\w+)", re.MULTILINE)


def candidate_types(sdp: str) -> list[str]:
    """The types of the ICE candidates in `sdp` (host, srflx, prflx, relay), in order."""
    return _CANDIDATE_TYPE.findall(sdp)
