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


# What a lax SDP parser might still take for a fingerprint: the attribute in any case, blanks
# anywhere. Every such line must be in the one form that fingerprints() reads.
_FINGERPRINT_LIKE = re.compile(r"[ \t]*a[ \t]*=[ \t]*fingerprint[ \t]*:", re.IGNORECASE)
# Hash names are case-insensitive (RFC 8122), and fingerprints() reads them in any case.
_CANONICAL_FINGERPRINT = re.compile(
    r"a=fingerprint:[A-Za-z0-9-]+ [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")


def check_fingerprint_lines(sdp: str) -> None:
    """Raise ValueError unless every fingerprint line of `sdp` is in canonical form.

    The handshake binds the fingerprints that fingerprints() reads; a browser whose SDP parser
    is laxer than that could accept a certificate under a line it did not see, so descriptions
    with odd fingerprint lines (blanks, tabs, other case) are refused instead.
    """
    for line in sdp.split("\n"):
        line = line.removesuffix("\r")
        if _FINGERPRINT_LIKE.match(line) and not _CANONICAL_FINGERPRINT.fullmatch(line):
            raise ValueError(f"a fingerprint line not in canonical form: {line[:100]!r}")


_CANDIDATE_TYPE = re.compile(r"^a=candidate:.* typ (\w+)", re.MULTILINE)


def candidate_types(sdp: str) -> list[str]:
    """The types of the ICE candidates in `sdp` (host, srflx, prflx, relay), in order."""
    return _CANDIDATE_TYPE.findall(sdp)


# mpc-net carries data channels only: an SCTP association over DTLS (RFC 8841). Any other
# section (audio, video, RTP of any kind) would lead aiortc into its media code, which a party
# runs on stand-ins (rtc/lean.py), so such a description is refused before aiortc sees it.
_MEDIA_LIKE = re.compile(r"[ \t]*m[ \t]*=", re.IGNORECASE)
_DATA_CHANNEL_SECTION = re.compile(r"m=application \d+ (?:UDP|TCP)/DTLS/SCTP webrtc-datachannel")


def check_media_sections(sdp: str) -> None:
    """Raise ValueError unless every media section of `sdp` is a data channel's (one at least)."""
    sections = 0
    for line in sdp.split("\n"):
        line = line.removesuffix("\r")
        if _MEDIA_LIKE.match(line):
            if not _DATA_CHANNEL_SECTION.fullmatch(line):
                raise ValueError(f"a media section other than a data channel: {line[:100]!r}")
            sections += 1
    if not sections:
        raise ValueError("no data channel section")
