"""A test's network: the topology, coturn and the room server in it, and party runs behind NATs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .topology import (
    PRIVATE_RANGES,
    SERVER,
    SIGNAL_PORT,
    TURN_PORT,
    Sandbox,
    Topology,
    listening,
    tail,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(__file__).resolve().parent / "tools.py"
AUCTION = ROOT / "demos" / "auction.py"  # prints "Winner: party 1" and the price, 50, for -M3

REALM = "mpc-net.test"
TURN_USER = "mpc"
TURN_PASSWORD = "correct-horse"
WIRETAP_PORT = 8764

STUN_URL = f"stun:{SERVER}:{TURN_PORT}"


def turn_url(transport: str = "udp", user: str = TURN_USER, password: str = TURN_PASSWORD) -> str:
    return f"turn:{user}:{password}@{SERVER}:{TURN_PORT}?transport={transport}"


def rest_credentials(secret: str, expiry: int, name: str = "probe") -> tuple[str, str]:
    """TURN REST API credentials as coturn's use-auth-secret checks them."""
    username = f"{expiry}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


# The lines `mpc-net run` prints (see the interface in issue 4).
PATH_LINE = re.compile(r"party (\d+) -> party (\d+): path (\w+) -> (\w+)")
SDP_LINE = re.compile(r"sent (offer|answer) to party (\d+); candidates: ([\w, ]*)")


@dataclass
class PartyRun:
    index: int
    returncode: int | None  # None: still running at the deadline, then killed
    stdout: str
    stderr: str
    seconds: float  # from the moment the last party was started until this one exited

    @property
    def paths(self) -> dict[int, tuple[str, str]]:
        """Peer -> (local type, remote type) of the selected candidate pair."""
        found = {}
        for line in self.stderr.splitlines():
            match = PATH_LINE.search(line)
            if match and int(match.group(1)) == self.index:
                found[int(match.group(2))] = (match.group(3), match.group(4))
        return found

    @property
    def descriptions(self) -> list[tuple[str, int, list[str]]]:
        """(offer|answer, peer, candidate types) of every session description sent."""
        found = []
        for line in self.stderr.splitlines():
            match = SDP_LINE.search(line)
            if match:
                types = [t.strip() for t in match.group(3).split(",") if t.strip()]
                found.append((match.group(1), int(match.group(2)), types))
        return found


@dataclass
class Network:
    """One test's namespaces and processes; close() ends them all, whatever happened."""

    sandbox: Sandbox
    name: str
    kinds: list[str]
    directory: Path
    topology: Topology = field(init=False)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)
    signal_url: str | None = None  # where the room server listens
    party_url: str | None = None  # what the parties are given: the room server or the wiretap

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.topology = Topology(self.sandbox, self.name, self.kinds)
        started = time.monotonic()
        self.topology.up()
        self.build_seconds = time.monotonic() - started

    @property
    def sites(self):
        return self.topology.sites

    def spawn(self, label: str, argv: list[str], ns: str, **kwargs) -> subprocess.Popen:
        """A process in `ns` whose stdout and stderr go to files named after `label`."""
        out, err = self.directory / f"{label}.out", self.directory / f"{label}.err"
        self.logs[f"{label} stdout"], self.logs[f"{label} stderr"] = out, err
        with open(out, "w") as stdout, open(err, "w") as stderr:
            proc = self.sandbox.spawn(argv, ns, cwd=ROOT, stdin=subprocess.DEVNULL,
                                      stdout=stdout, stderr=stderr, **kwargs)
        self.processes.append((label, proc))
        return proc

    # Services in the internet namespace.

    def start_coturn(self, *, secret: str | None = None) -> None:
        """coturn on SERVER:3478 for STUN, and TURN over UDP and TCP: with a static user
        (TURN_USER/TURN_PASSWORD), or with TURN REST credentials made from `secret`."""
        log = self.directory / "turnserver.log"
        self.logs["coturn log"] = log
        argv = ["turnserver", "-n", "-v", f"--listening-ip={SERVER}", f"--relay-ip={SERVER}",
                f"--listening-port={TURN_PORT}", f"--realm={REALM}", "--no-tls", "--no-dtls",
                "--no-cli", "--fingerprint", "--min-port=49152", "--max-port=65535",
                f"--log-file={log}", "--simple-log", "--no-stdout-log",
                f"--pidfile={self.directory / 'turnserver.pid'}",
                f"--userdb={self.directory / 'turndb'}",
                *(f"--denied-peer-ip={r}" for r in PRIVATE_RANGES)]
        if secret is None:
            argv += ["--lt-cred-mech", f"--user={TURN_USER}:{TURN_PASSWORD}"]
        else:
            argv += ["--use-auth-secret", f"--static-auth-secret={secret}"]
        proc = self.spawn("coturn", argv, self.topology.inet)
        wait_for(lambda: proc.poll() is not None or (
            listening(self.sandbox, self.topology.inet, "udp", SERVER, TURN_PORT)
            and listening(self.sandbox, self.topology.inet, "tcp", SERVER, TURN_PORT)),
            "coturn to listen")
        assert proc.poll() is None, "coturn exited:\n" + tail(log)

    def start_room_server(self, *options: str, wiretap: bool = False) -> str:
        """`mpc-net signal` on SERVER:8765; with `wiretap`, parties go through a relay on
        SERVER:8764 that records every message. Returns the URL for the parties."""
        proc = self.spawn("room-server", [sys.executable, "-m", "mpc_net", "signal", "--host",
                                          SERVER, "--port", str(SIGNAL_PORT), "-v", *options],
                          self.topology.inet)
        err = self.logs["room-server stderr"]
        match = wait_for(lambda: proc.poll() is not None or re.search(
            r"listening on (ws://\S+)", err.read_text()), "the room server to listen")
        assert proc.poll() is None, "room server exited:\n" + tail(err)
        self.signal_url = match.group(1)
        if wiretap:
            self.wiretap_log = self.directory / "wiretap.jsonl"
            self.logs["wiretap"] = self.wiretap_log
            proc = self.spawn("wiretap", [sys.executable, str(TOOLS), "wiretap",
                                          str(WIRETAP_PORT), self.signal_url,
                                          str(self.wiretap_log)], self.topology.inet)
            err = self.logs["wiretap stderr"]
            match = wait_for(lambda: proc.poll() is not None or re.search(
                r"listening on (ws://\S+)", err.read_text()), "the wiretap to listen")
            assert proc.poll() is None, "wiretap exited:\n" + tail(err)
        self.party_url = match.group(1)
        return self.party_url

    def tapped_messages(self) -> list[str]:
        """Every message the wiretap saw, in either direction."""
        lines = self.wiretap_log.read_text().splitlines()
        return [json.loads(line)["message"] for line in lines if line.strip()]

    # Programs in the party namespaces.

    def run_in_party(self, index: int, *argv: str, timeout: float = 30
                     ) -> subprocess.CompletedProcess:
        return self.sandbox.run(*argv, ns=self.sites[index].ns, check=False, timeout=timeout)

    def run_parties(self, script: Path, room: str, credentials: list[list[str]],
                    options: list[str] = (), per_party: dict[int, list[str]] | None = None,
                    start_delays: dict[int, float] | None = None, timeout: float = 90,
                    ) -> list[PartyRun]:
        """`mpc-net run SCRIPT -M m -I i ...` in each party's namespace, all at once (or party i
        `start_delays[i]` seconds after the first); waits until all have exited."""
        parties = len(self.sites)
        assert self.party_url, "start the room server first"
        procs = {}
        first = time.monotonic()
        for i in sorted(range(parties), key=lambda i: (start_delays or {}).get(i, 0)):
            delay = (start_delays or {}).get(i, 0)
            time.sleep(max(0.0, first + delay - time.monotonic()))
            argv = [sys.executable, "-m", "mpc_net", "run", str(script), f"-M{parties}",
                    "-I", str(i), "--room", room, "--signal", self.party_url, *credentials[i],
                    *options, *(per_party or {}).get(i, [])]
            procs[i] = self.spawn(f"party{i}", argv, self.sites[i].ns)
        started = time.monotonic()
        ended = {}
        while len(ended) < parties and time.monotonic() < started + timeout:
            for i, proc in procs.items():
                if i not in ended and proc.poll() is not None:
                    ended[i] = time.monotonic() - started
            time.sleep(0.05)
        runs = []
        for i in range(parties):
            if i not in ended:
                procs[i].kill()
                procs[i].wait()
            runs.append(PartyRun(
                i, procs[i].returncode if i in ended else None,
                self.logs[f"party{i} stdout"].read_text(errors="replace"),
                self.logs[f"party{i} stderr"].read_text(errors="replace"),
                ended.get(i, timeout)))
        return runs

    def report(self) -> str:
        """The logs, for a failed test."""
        parts = [f"network {self.name}: {', '.join(self.kinds)} ({self.sandbox.mode})"]
        for label, path in self.logs.items():
            parts.append(f"----- {label} ({path})\n{tail(path, 60)}")
        return "\n".join(parts)

    def close(self) -> None:
        for _, proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for _, proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.topology.down()


def describe(runs: list[PartyRun]) -> str:
    """Every party's exit code and output, for assertion messages."""
    return "\n".join(f"===== party {r.index}: exit {r.returncode} after {r.seconds:.1f} s\n"
                     f"--- stdout\n{r.stdout}--- stderr\n{r.stderr}" for r in runs)
