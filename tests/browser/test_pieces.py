"""The browser side's pure pieces, tested natively: candidate filtering, demo inputs, the
shared signaling session, and the build's integrity check."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
import zipfile

import pytest
from seats import key

from mpc_net import bundle as builder
from mpc_net.browser.candidates import keep_host_candidates
from mpc_net.browser.demos import DEMOS, InputError, catalog, find
from mpc_net.ed25519 import check_signature
from mpc_net.signaling import protocol
from mpc_net.signaling.protocol import ErrorCode, SignalingError
from mpc_net.signaling.session import SignalingSession

from . import connecting
from helpers import ROOT

SDP = """v=0\r
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
a=candidate:1 1 udp 2122260223 127.0.0.1 50001 typ host generation 0\r
a=candidate:2 1 udp 2122194687 192.0.2.2 50002 typ host generation 0\r
a=candidate:3 1 udp 2122194687 5f1c1b6e-0c0e-4f0e-9c1e-2b1a3c4d5e6f.local 50003 typ host\r
a=candidate:4 1 udp 1685987071 198.51.100.7 50004 typ srflx raddr 0.0.0.0 rport 0\r
a=candidate:5 1 udp 41885439 203.0.113.9 3478 typ relay raddr 198.51.100.7 rport 50004\r
a=fingerprint:sha-256 AB:CD\r
"""


def test_only_chosen_host_candidates_are_offered() -> None:
    kept = keep_host_candidates(SDP, ["127.0.0.1"])
    assert "127.0.0.1 50001" in kept
    assert "192.0.2.2" not in kept and ".local" not in kept
    assert "typ srflx" in kept and "typ relay" in kept  # other kinds are not host addresses
    assert kept.endswith("a=fingerprint:sha-256 AB:CD\r\n")


def test_each_party_gets_its_own_input() -> None:
    auction, stats, santa = find("auction"), find("stats"), find("secretsanta")
    # Party i takes the i-th value of a list, so i + 1 copies give party i its own value.
    assert auction.arguments("75", 2) == ["--bids", "75,75,75"]
    assert stats.arguments(" -3 ", 1) == ["-3", "-3"]
    assert santa.arguments("8", 2) == ["8"]  # public: the same on every party
    assert stats.arguments("", 4) == []  # the demo's default inputs
    with pytest.raises(InputError, match="no spaces"):
        stats.arguments("1 2", 0)
    with pytest.raises(InputError, match="no demo called"):
        find("nonesuch")
    assert [d["name"] for d in catalog()] == [d.name for d in DEMOS]
    for demo in DEMOS:
        assert (ROOT / "demos" / f"{demo.name}.py").is_file()


class FakeSession(SignalingSession):
    """A session over two lists instead of a connection."""

    def __init__(self, incoming: list[protocol.ServerMessage]) -> None:
        super().__init__()
        self.url = "ws://test"
        self.incoming = [protocol.encode(m) for m in incoming]
        self.sent: list[protocol.ClientMessage] = []

    async def _send_text(self, text: str) -> None:
        self.sent.append(protocol.parse_client_message(text))

    async def _receive_text(self) -> str:
        return self.incoming.pop(0)


async def test_the_session_joins_relays_and_reports_like_the_native_client() -> None:
    session = FakeSession([protocol.Challenge(bytes(32)),
                           protocol.RelayedSignal(1, {"stale": True}),
                           protocol.Joined("lab", 0, 2, [1], [], {1: "ed25519:" + "A" * 43}),
                           protocol.PeerLeft(1),
                           protocol.Error("party-taken", "party 0 is taken"),
                           protocol.Closing("maintenance")])
    joined = await session.join("lab", 0, 2, identity=key(0))
    assert joined.peers == [1] and joined.keys == {1: "ed25519:" + "A" * 43}
    offer = protocol.SessionDescription("offer", "v=0")
    await session.send_signal(1, offer)
    await session.leave()
    assert [m.kind for m in session.sent] == ["hello", "join", "signal", "leave"]
    assert protocol.parse_signal_data(session.sent[2].data) == offer
    statement = protocol.seat_statement(bytes(32), "lab", 0, 2, None)
    assert check_signature(key(0).public_key, session.sent[1].proof, statement)
    assert await session.recv() == protocol.PeerLeft(1)
    assert (await session.recv()).code == "party-taken"
    with pytest.raises(SignalingError) as closing:
        await session.recv()
    assert closing.value.code == ErrorCode.SERVER_CLOSING
    with pytest.raises(SignalingError, match="bad-room"):
        await session.join("no spaces", 0, 2, identity=key(0))
    refused = FakeSession([protocol.Challenge(bytes(32)),
                           protocol.Error("party-taken", "party 0 is taken")])
    with pytest.raises(SignalingError, match="party 0 is taken"):
        await refused.join("lab", 0, 2, identity=key(0))


def test_a_pyodide_tarball_that_fails_its_integrity_check_is_refused(tmp_path,
                                                                      monkeypatch) -> None:
    cached = builder.downloads() / f"pyodide-{builder.PYODIDE_VERSION}.tgz"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tarball = builder.downloads() / cached.name
    tarball.parent.mkdir(parents=True)
    if cached.exists():
        shutil.copy(cached, tarball)
        assert builder.pyodide_tarball() == tarball  # the real one passes
    tarball.write_bytes(b"not the pinned tarball")
    with pytest.raises(builder.BuildError, match="does not match the pinned integrity"):
        builder.pyodide_tarball()
    assert not tarball.exists()  # removed, so that the next build fetches it again


def test_without_npm_the_build_says_so_in_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing downloaded yet
    monkeypatch.setenv("PATH", str(tmp_path))  # and no npm to download with
    with pytest.raises(builder.BuildError, match="needs npm") as refused:
        builder.installed_bundle(lambda directory: None)
    assert "\n" not in str(refused.value)


def test_our_wheels_are_the_installed_sources(tmp_path) -> None:
    sources = builder.Sources.read()
    name = builder.write_wheel(tmp_path, "mpc-net", "0.1.0", sources.package)
    assert name == "mpc_net-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / name) as wheel:
        names = set(wheel.namelist())
        assert wheel.read("mpc_net/web.py") == (ROOT / "mpc_net" / "web.py").read_bytes()
        record = wheel.read("mpc_net-0.1.0.dist-info/RECORD").decode()
    assert "mpc_net/browser/page.py" in names and "mpc_net/bundle.py" in names
    # The page glue is served, and the demos come as a wheel of their own.
    assert not any(n.startswith(("mpc_net/demos/", "mpc_net/webapp/")) for n in names)
    assert set(line.split(",")[0] for line in record.splitlines()) == names
    # Reproducible: the same sources make the same bytes.
    again = tmp_path / "again"
    again.mkdir()
    builder.write_wheel(again, "mpc-net", "0.1.0", sources.package)
    assert (again / name).read_bytes() == (tmp_path / name).read_bytes()


def test_the_site_files_are_the_wheels_files(tmp_path) -> None:
    """What a page writes into site-packages is what unpacking the three wheels gives: every
    path of each, dist-info included, with the same bytes, and nothing else."""
    sources = builder.Sources.read()
    shutil.copy(builder.mpyc_wheel(), tmp_path)
    builder.write_wheel(tmp_path, "mpc-net", "0.1.0", sources.package)
    builder.write_wheel(tmp_path, "mpc-net-demos", "0.1.0", sources.demos)
    wheels = sorted(tmp_path.glob("*.whl"))
    builder.write_site_files(tmp_path / "site", builder.site_files(wheels))
    # Read as the page reads it: a JSON line of [path, length], then the bytes in that order.
    head, _, data = (tmp_path / "site").read_bytes().partition(b"\n")
    index = json.loads(head)
    assert sum(length for _, length in index) == len(data)
    written, offset = {}, 0
    for path, length in index:
        written[path], offset = data[offset:offset + length], offset + length
    expected = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            expected |= {name: archive.read(name) for name in archive.namelist()}
    assert written == expected and len(index) == len(expected)
    assert builder.read_site_files(tmp_path / "site") == written  # as the build reads it back
    (tmp_path / "site").write_bytes((tmp_path / "site").read_bytes()[:-1])
    with pytest.raises(builder.BuildError, match="does not hold the files its index lists"):
        builder.read_site_files(tmp_path / "site")
    assert written["mpc_net/web.py"] == (ROOT / "mpc_net" / "web.py").read_bytes()
    assert {"mpyc-0.11.dist-info/METADATA", "mpc_net-0.1.0.dist-info/RECORD",
            "mpc_net_demos/__init__.py", "mpyc/runtime.py"} <= set(written)


def test_a_wheel_with_files_outside_site_packages_is_refused(tmp_path) -> None:
    with zipfile.ZipFile(tmp_path / "x-1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("x-1.data/scripts/x", b"#!python\n")
    with pytest.raises(builder.BuildError, match="outside site-packages"):
        builder.site_files([tmp_path / "x-1-py3-none-any.whl"])


def test_the_built_bundle_holds_pyodide_our_wheels_and_the_app(bundle) -> None:
    """Built offline (the `bundle` fixture builds in a namespace without network)."""
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["pyodide"] == builder.PYODIDE_VERSION
    assert manifest["packagesUrl"] is None  # offline unless built with --packages-url
    wheels = manifest["wheels"]
    assert [w.split("-")[0] for w in wheels] == ["mpc_net", "mpc_net_demos", "mpyc"]
    assert (bundle / manifest["siteFiles"]).is_file()  # their files, which the page writes
    assert (bundle / f"{manifest['siteFiles']}.gz").is_file()  # inflated by the browser
    for name in wheels:
        assert (bundle / "wheels" / name).is_file()
    with zipfile.ZipFile(bundle / "wheels" / wheels[1]) as demos:
        assert {f"mpc_net_demos/{d.name}.py" for d in DEMOS} <= set(demos.namelist())
    for name in ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json"):
        assert (bundle / manifest["pyodideDirectory"] / name).is_file()
    for name in ("index.html", "app.js", "style.css"):
        assert (bundle / name).is_file()
    # Precompressed where it pays: the WebAssembly, not the zip of the standard library.
    pyodide = bundle / builder.PYODIDE_DIRECTORY
    assert manifest["pyodideDirectory"] == pyodide.name
    assert gzip.decompress((pyodide / "pyodide.asm.wasm.gz").read_bytes()) == \
        (pyodide / "pyodide.asm.wasm").read_bytes()
    assert not (pyodide / "python_stdlib.zip.gz").exists()


def test_connecting_counts_from_the_last_join_to_the_last_party_connected() -> None:
    """measure.py --connect: a page's times are its last Join and the first "All parties
    connected" after it; the parties wait from the last Join of all to the last connected."""
    connected = "status: All parties connected; computing."
    trace = [[1000.0, connecting.JOINED], [1400.0, connected],  # an earlier run
             [2000.0, connecting.JOINED], [2080.0, "pc0: candidate host 127.0.0.1"],
             [2050.0, "pc0: candidate host 127.0.0.1"], [2090.0, "pc0: candidate host ::1"],
             [2600.0, connected], [2900.0, connected]]
    assert connecting.page_times(trace) == (2.0, 2.6)
    assert connecting.waited([1.0, 2.0, 1.5], [2.6, 2.7, 2.5]) == pytest.approx(0.7)
    steps = connecting.steps(trace, 2.0)
    assert [label for _, label in steps] == [
        connecting.JOINED, connected, connecting.JOINED, "pc0: candidate host 127.0.0.1 x2",
        "pc0: candidate host ::1", connected, connected]
    assert [round(at, 3) for at, _ in steps] == [-1.0, -0.6, 0.0, 0.05, 0.09, 0.6, 0.9]


def test_connecting_times_a_native_partys_lines_as_they_come() -> None:
    read, write = os.pipe()
    with open(read) as pipe, open(write, "w") as writer:
        lines = connecting.TimedLines(pipe)
        before = time.time()
        writer.write("joined room\n")
        writer.flush()
        time.sleep(0.05)
        writer.write("connected to all 2 peers\n")
        writer.close()
        assert lines.text() == "joined room\nconnected to all 2 peers\n"
        assert before <= lines.first("joined") <= lines.first("connected to all") - 0.04
        with pytest.raises(StopIteration):
            lines.first("never said")


def test_the_connect_trace_is_a_script() -> None:
    """TRACE runs before the page's own scripts; a syntax error would only show as a trace
    that is not there."""
    done = subprocess.run(["node", "--check"], input=connecting.TRACE, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
