"""Which ICE host candidates a browser party offers. Pure code: it edits SDP text.

The browser gathers on every interface and cannot be told which to use; natively, aioice is
told (`MeshConfig.host_addresses`). So the browser backend removes the host candidates on
other addresses from the description it sends, and the peer never tries them.
"""

from __future__ import annotations


def keep_host_candidates(sdp: str, addresses: list[str]) -> str:
    """`sdp` without the host candidates whose address is not in `addresses` (mDNS `.local`
    names included); server-reflexive and relay candidates stay."""
    lines = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("a=candidate:"):
            fields = line.split()
            # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ T
            if len(fields) >= 8 and fields[7] == "host" and fields[4] not in addresses:
                continue
        lines.append(line)
    return "".join(lines)

