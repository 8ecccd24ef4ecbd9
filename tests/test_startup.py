"""The start and end of a party process.

What it imports: a party started as `mpc-net run` loads neither the room server's side nor the
web app's (its command line's parser is made without them), nor what mpc-net defers or stands
in for until a run uses it.
Start: a party decides for itself whether the room server is reached through a proxy (the
environment's *_proxy variables), so that websockets' lookup, and urllib.request with it, loads
only where a proxy may be configured; behind a proxy the room server is still reached.
Imports run with the cyclic garbage collector off, from the command's start.
Dataclass methods: those that dataclasses generates for aiortc's and websockets' classes are
compiled on a party's first start only, and kept as Python keeps bytecode (rtc/compiled.py).
End: it freezes what it imported (no collection walks those objects again, nor the last one at
exit), and the program's own garbage is still finalized at exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from mpc_net.native.signaling import SignalingClient

from helpers import ROOT, RoomServerProcess, free_port, make_credentials, mpc_net

# Leaves behind an object in a reference cycle: only a collection finalizes it, at the latest
# the interpreter's last one at exit.
PROGRAM = """
import gc, os
from mpyc.runtime import mpc


class Goodbye:
    def __del__(self):
        os.write(2, f"goodbye from party {mpc.pid}\\n".encode())


async def main():
    await mpc.start()
    total = await mpc.output(mpc.sum(mpc.input(mpc.SecInt()(mpc.pid + 1))))
    print(f"total {total}, frozen {gc.get_freeze_count() > 0}, collecting {gc.isenabled()}")
    await mpc.shutdown()

leftover = Goodbye()
leftover.itself = leftover
mpc.run(main())
"""


@pytest.mark.parametrize("parties", [1, 2])
def test_a_party_freezes_its_imports_and_still_finalizes_the_programs_garbage(
        parties: int, tmp_path) -> None:
    script = tmp_path / "leftover.py"
    script.write_text(PROGRAM)
    logs = tmp_path / "logs"
    done = mpc_net("run", str(script), f"-M{parties}", "--log-dir", str(logs))
    assert done.returncode == 0, done.stderr
    outputs = [done.stdout + done.stderr]
    outputs += [(logs / f"party{i}.log").read_text() for i in range(1, parties)]
    for pid, output in enumerate(outputs):
        # Frozen before the program ran, and collecting again (off while the party imported).
        assert f"total {parties * (parties + 1) // 2}, frozen True, collecting True" in output
        assert f"goodbye from party {pid}" in output


# As the `mpc-net` script runs: importing its module imports little, and the collector's runs
# are counted from main() to the program.
_COUNTING = """
import gc, sys
from mpc_net.cli import main
assert not {"mpc_net.run_command", "mpc_net.mesh", "asyncio", "json"} & sys.modules.keys()
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
sys.collections_before_program = collections
main()
"""


def test_the_collector_never_runs_while_mpc_net_imports(tmp_path) -> None:
    script = tmp_path / "counted.py"
    script.write_text("import sys\n"
                      "print('collections', len(sys.collections_before_program))\n")
    done = subprocess.run([sys.executable, "-c", _COUNTING, "run", str(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "collections 0"


@pytest.fixture
def room_server():
    server = RoomServerProcess()
    yield server
    server.close()


class ConnectProxy:
    """A tiny HTTP CONNECT proxy on loopback: it records each request line, then relays bytes."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        head = (await client_in.readuntil(b"\r\n\r\n")).decode()
        self.requests.append(head.splitlines()[0])
        host, port = head.split()[1].rsplit(":", 1)
        server_in, server_out = await asyncio.open_connection(host, int(port))
        client_out.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(self._relay(client_in, server_out), self._relay(server_in, client_out))

    @staticmethod
    async def _relay(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        sink.close()

    def close(self) -> None:
        self._server.close()


_PROXY_VARIABLES = [n for n in os.environ if n.lower().endswith("_proxy")]


# websockets looks for ws, socks, https and http proxies, in that order; all_proxy is none of them.
@pytest.mark.parametrize("variable, used", [("http_proxy", True), ("HTTPS_PROXY", True),
                                            ("all_proxy", False)])
async def test_a_party_behind_a_proxy_reaches_the_room_server_through_it(
        room_server, monkeypatch, variable: str, used: bool) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name)
    proxy = ConnectProxy()
    monkeypatch.setenv(variable, await proxy.start())
    client = SignalingClient()
    try:
        await client.connect(room_server.url)
        await client.close()
    finally:
        proxy.close()
    address = room_server.url.removeprefix("ws://")
    assert proxy.requests == ([f"CONNECT {address} HTTP/1.1"] if used else [])


# A party's imports and a connection to the room server with no proxy configured.
_NO_PROXY = """
import asyncio, sys
import mpc_net.native.peer, mpc_net.native.party
from mpc_net.native.signaling import SignalingClient

async def connect():
    client = SignalingClient()
    await client.connect(sys.argv[1])
    await client.close()

asyncio.run(connect())
assert type(sys.modules["urllib.request"]).__name__ == "_LazyModule"
assert "http.client" not in sys.modules and "tempfile" not in sys.modules
"""


def test_without_a_proxy_configured_a_party_connects_without_urllib_request(room_server) -> None:
    env = {n: v for n, v in os.environ.items() if not n.lower().endswith("_proxy")}
    done = subprocess.run([sys.executable, "-c", _NO_PROXY, room_server.url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_socks_proxy_that_cannot_be_used_is_one_line(tmp_path) -> None:
    # websockets needs python-socks for a SOCKS proxy (not one of mpc-net's dependencies); with
    # or without it, a proxy out of reach is a failed connect, said in one line.
    credentials = make_credentials(tmp_path, 2)
    url = f"ws://127.0.0.1:{free_port()}"
    env = {n: v for n, v in os.environ.items() if not n.lower().endswith("_proxy")}
    done = mpc_net("run", "demos/auction.py", "-M2", "-I", "0", "--room", "r", "--signal", url,
                   *credentials[0], env={**env, "socks_proxy": f"socks5h://127.0.0.1:{free_port()}"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"mpc-net: cannot connect to room server {url}: "), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


# What the party process holds when the program starts: every module, and whether it is one that
# loads when first used (lean.py's and the standard library's LazyLoader).
_MODULES = """
import json, sys
lazy = {n: type(m).__name__ == "_LazyModule" for n, m in sys.modules.items()}
from mpyc.runtime import mpc
mpc.run(mpc.start())
if mpc.pid == 0:
    print("modules", json.dumps(lazy))
mpc.run(mpc.shutdown())
"""
# Run only by `mpc-net signal` and `mpc-net web` (their options too), or when a run uses them (a
# proxy, a report, a media section, getStats, websockets' version, mDNS, text from elsewhere to
# print), or never (PyAV, SRTP, shutil: the command line finds the terminal's width without it):
# not imported, or imported to load when first used.
_NOT_RUN = ("mpc_net.web", "mpc_net.web_arguments", "mpc_net.signaling.arguments",
            "mpc_net.signaling.limits", "mpc_net.bundle", "mpc_net.signaling.server",
            "mpc_net.signaling.keepalive", "websockets.server", "websockets.asyncio.server",
            "importlib.metadata", "urllib.request", "http.client", "email.message", "tempfile",
            "av", "aiortc.codecs", "aiortc.stats", "pylibsrtp", "dns.message", "shutil", "bz2",
            "lzma", "unicodedata")


def test_a_party_loads_neither_the_room_servers_side_nor_what_it_defers(tmp_path) -> None:
    script = tmp_path / "modules.py"
    script.write_text(_MODULES)
    env = {n: v for n, v in os.environ.items() if not n.lower().endswith("_proxy")}
    done = mpc_net("run", str(script), "-M2", "--log-dir", str(tmp_path / "logs"), env=env)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("modules "))
    lazy = json.loads(line.removeprefix("modules "))
    assert "mpc_net.native.peer" in lazy and "aiortc" in lazy  # the snapshot is a party's
    assert [name for name in _NOT_RUN if not lazy.get(name, True)] == []


# As the `mpc-net` script runs, with an exit handler of the process's own that the interpreter's
# teardown would run.
_TEARDOWN = """
import atexit, sys
atexit.register(lambda: print("torn down", file=sys.stderr))
from mpc_net.cli import main
main()
"""
_ENDING = """
import sys
from mpyc.runtime import mpc
mpc.run(mpc.start())
mpc.run(mpc.shutdown())
print(f"party {mpc.pid} done", flush=False)
sys.exit(int(sys.argv[1]) if mpc.pid == 1 else 0)
"""


@pytest.mark.parametrize("party_1_exits, code", [(0, 0), (3, 1)])
def test_the_local_mode_parent_skips_the_interpreters_teardown(tmp_path, party_1_exits: int,
                                                                code: int) -> None:
    # It runs no program and has ended every party and removed what it made by then: its
    # teardown (of the room server, websockets, MPyC's options) would only delay the exit.
    script = tmp_path / "ending.py"
    script.write_text(_ENDING)
    done = subprocess.run([sys.executable, "-c", _TEARDOWN, "run", str(script), "-M2", "--",
                           str(party_1_exits)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == code, done.stderr
    assert done.stdout.splitlines()[-1] == "party 0 done"
    assert "torn down" not in done.stderr


# A party's imports, and a dataclass made on a connection's way (rtc/lazy.py): the source texts
# that dataclasses compiled meanwhile (exec of a text: an audit event "compile" of "<string>";
# dataclasses' texts define its __create_fn__),
# and whether the cache holds what compiling each text makes (this script inherits no
# __future__ flags, as dataclasses' exec does not).
_GENERATED = """
import marshal, sys
compiled = []
sys.addaudithook(lambda event, args: event == "compile" and args[1] == "<string>"
                 and "__create_fn__" in str(args[0]) and compiled.append(args[0]))
import mpc_net.native.peer, mpc_net.native.signaling, mpc_net.native.party
from aiortc import RTCConfiguration
RTCConfiguration()
print("compiled", len(compiled))
from mpc_net.rtc.compiled import CACHE_FILE
with open(CACHE_FILE, "rb") as file:
    codes = marshal.loads(file.read()[4:])
assert all(compile(text, "<string>", "exec") == code for text, code in codes.items())
print("kept", len(codes))
"""


def test_dataclass_methods_compile_on_the_first_start_only(tmp_path) -> None:
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "bytecode")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    counts = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", _GENERATED], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        counts.append(done.stdout.split())
    first, second = counts
    assert int(first[1]) > 30 and first[3] == first[1]  # aiortc's and websockets', all kept
    assert second == ["compiled", "0", "kept", first[3]]
