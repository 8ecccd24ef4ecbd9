"""Fingerprint lines: the handshake binds what fingerprints() reads, so any line a laxer parser
might still take for a fingerprint must be in the one canonical form."""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from mpc_net.mesh import MeshError
from mpc_net.mesh.peers import _description
from mpc_net.sdp import check_fingerprint_lines, fingerprints
from mpc_net.signaling.protocol import SessionDescription

HEX = ":".join(["AB"] * 32)


async def _aiortc_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_real_descriptions_and_several_fingerprints_pass() -> None:
    sdp = await _aiortc_offer()
    check_fingerprint_lines(sdp)
    assert len(fingerprints(sdp).split(",")) >= 1
    several = sdp + f"a=fingerprint:SHA-1 {':'.join(['CD'] * 20)}\r\n"  # names have any case
    check_fingerprint_lines(several)
    assert _description(1, SessionDescription("offer", several), "offer")


@pytest.mark.parametrize("line", [
    f"a=fingerprint:sha-256  {HEX}",  # two spaces
    f"a=fingerprint:sha-256\t{HEX}",  # a tab
    f"a=fingerprint:sha-256 {HEX} ",  # trailing blank
    f" a=fingerprint:sha-256 {HEX}",  # leading blank
    f"A=FINGERPRINT:sha-256 {HEX}",  # upper-case attribute
    f"a=Fingerprint:sha-256 {HEX}",
    f"a = fingerprint:sha-256 {HEX}",
    f"a=fingerprint :sha-256 {HEX}",
    f"a=fingerprint:sha-256 {HEX[:-1]}",  # a half byte
    "a=fingerprint:sha-256",
])
async def test_odd_fingerprint_lines_are_refused(line: str) -> None:
    sdp = (await _aiortc_offer()).replace("a=setup:", line + "\r\na=setup:", 1)
    with pytest.raises(ValueError, match="not in canonical form"):
        check_fingerprint_lines(sdp)
    with pytest.raises(MeshError, match="party 2 sent an SDP answer with a fingerprint line not "
                                        "in canonical form"):
        _description(2, SessionDescription("answer", sdp), "answer")
