"""A remote description with an audio or video section: mpc-net carries data channels only.

A party refuses such an offer or answer like any other bad one (one line naming the party), and
never reaches aiortc's media code for it: that code runs on stand-ins (rtc/lean.py), and the
codecs a party does not load must not be loaded by a stranger's offer either.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mpc_net.mesh import MeshError
from mpc_net.mesh.peers import _description
from mpc_net.native.identity import FileIdentity, load_roster
from mpc_net.native.signaling import SignalingClient
from mpc_net.sdp import check_media_sections
from mpc_net.signaling import protocol

from helpers import ROOT, RoomServerProcess, make_credentials, program_lines

# Real aiortc offers, made by aiortc as shipped: in this process, aiortc may have been imported
# by mpc-net first, with its media code as stand-ins.
_OFFERS = """
import asyncio, json, sys
from aiortc import RTCConfiguration, RTCPeerConnection

async def offer(kinds, data_channel):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        pc.addTransceiver(kind)
    if data_channel:
        pc.createDataChannel("mpc-net")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp

wanted = json.loads(sys.argv[1])
print(json.dumps([asyncio.run(offer(kinds, data_channel)) for kinds, data_channel in wanted]))
"""
_WANTED = [((), True), (("audio",), True), (("video",), True), (("audio", "video"), False),
           ((), False)]


@pytest.fixture(scope="module")
def offers() -> dict[tuple[tuple[str, ...], bool], str]:
    """An offer by kinds of transceiver and whether it has a data channel."""
    done = subprocess.run([sys.executable, "-c", _OFFERS, json.dumps(_WANTED)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return dict(zip(_WANTED, json.loads(done.stdout), strict=True))


def test_a_data_channel_offer_passes(offers) -> None:
    sdp = offers[(), True]
    check_media_sections(sdp)
    assert _description(0, protocol.SessionDescription("offer", sdp), "offer")


@pytest.mark.parametrize("kinds, data_channel, named", [
    (("audio",), True, r"'m=audio \d+ UDP/TLS/RTP/SAVPF "),
    (("video",), True, r"'m=video \d+ UDP/TLS/RTP/SAVPF "),
    (("audio", "video"), False, "'m=audio "),
])
def test_offers_with_media_sections_are_refused(offers, kinds, data_channel, named) -> None:
    sdp = offers[kinds, data_channel]
    with pytest.raises(ValueError, match=f"a media section other than a data channel: {named}"):
        check_media_sections(sdp)
    with pytest.raises(MeshError, match=f"party 0 sent an SDP answer with a media section other "
                                        f"than a data channel: {named}"):
        _description(0, protocol.SessionDescription("answer", sdp), "answer")


@pytest.mark.parametrize("line", [
    "m=application 9 UDP/TLS/RTP/SAVPF 96",  # RTP on an application section
    "m=text 9 UDP/TLS/RTP/SAVPF 96",
    "m=message 9 TCP/MSRP *",
    "M=audio 9 UDP/TLS/RTP/SAVPF 0",  # in any case a lax parser might take
    " m=audio 9 UDP/TLS/RTP/SAVPF 0",
])
def test_any_section_but_an_sctp_data_channel_is_refused(offers, line: str) -> None:
    sdp = offers[(), True] + line + "\r\n"
    with pytest.raises(ValueError, match="a media section other than a data channel"):
        check_media_sections(sdp)


def test_a_description_without_a_data_channel_section_is_refused(offers) -> None:
    with pytest.raises(ValueError, match="no data channel section"):
        check_media_sections(offers[(), False])


# Party 1 of 2; at the end, whether anything of aiortc's codecs or PyAV was ever loaded.
WAITS = """
import sys
from mpyc.runtime import mpc

print("the program runs", flush=True)
try:
    mpc.run(mpc.start())
finally:
    media = sorted(n for n in sys.modules if n == "av" or n.startswith(("av.", "aiortc.codecs")))
    print(f"media modules loaded: {media}", file=sys.stderr, flush=True)
"""


async def _seat_0(url: str, room: str, credentials: list[str]) -> SignalingClient:
    client = SignalingClient()
    await client.connect(url)
    await client.join(room, 0, 2, identity=FileIdentity.load(credentials[1]),
                      roster=load_roster(credentials[3]))
    return client


def test_a_party_refuses_an_offer_with_audio_from_the_room(offers, tmp_path: Path) -> None:
    """Party 0's seat (or a room server speaking for it) offers audio beside the data channel:
    party 1 refuses it in one line, exits at once with an error, and loads no media code (the
    offer comes while its program waits for MPyC's start, which then fails)."""
    script = tmp_path / "waits.py"
    script.write_text(WAITS)
    credentials = make_credentials(tmp_path, 2)
    server = RoomServerProcess()
    party = subprocess.Popen(
        [sys.executable, "-m", "mpc_net", "run", str(script), "-M2", "-I", "1", "--room", "av",
         "--signal", server.url, *credentials[1],],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def offer_audio() -> str:
        while not program_lines(line := party.stdout.readline()):
            assert line, "party 1 ended before its program ran"
        client = await _seat_0(server.url, "av", credentials[0])
        await client.send_signal(1, protocol.SessionDescription("offer", offers[("audio",), True]))
        try:  # seat 0 stays until party 1 has ended, so the refusal is all that ended it
            _, err = await asyncio.to_thread(party.communicate, timeout=30)
        finally:
            await client.close()
        return err

    try:
        err = asyncio.run(offer_audio())
    finally:
        party.kill()
        server.close()
    assert party.returncode == 1, err
    assert "Traceback" not in err, err
    refusals = [line for line in err.splitlines() if "media section" in line]
    assert len(refusals) == 1, err
    assert ("party 0 sent an SDP offer with a media section other than a data channel: 'm=audio"
            in refusals[0]), err
    assert "media modules loaded: []" in err, err
