"""Network namespaces for the NAT tests: a "public" internet and parties behind NAT routers.

    party i: P<i> 10.0.<i+1>.2 --- 10.0.<i+1>.1 [R<i>: NAT] 203.0.113.<11+i> --+
                                                                              +-- br0 203.0.113.1
    coturn :3478 (STUN and TURN over UDP and TCP), room server :8765 ---------+   ("inet")

Everything is built inside a *sandbox*: one helper process with a mount namespace of its own
(with a tmpfs on /run, so that the names `ip netns add` makes are visible only there) and an
empty network namespace of its own. Commands reach the sandbox through `nsenter`. No interface
is ever created in the machine's own network namespace, nothing is routed off the machine, and
the machine's `ip netns list` never changes. When the sandbox process dies, its namespaces go
with it. As root the sandbox is `unshare --mount --net`; otherwise (or with MPC_NET_NAT_USERNS=1)
it adds a user namespace, `unshare --user --map-root-user`, which needs no privileges at all.

NAT kinds of a router (measured in ../shared/research/feas_nat.md):
- "cone": iptables MASQUERADE, which keeps the source port (endpoint-independent mapping), and
  a firewall that drops unsolicited packets from the WAN (address- and port-dependent
  filtering). Without that firewall Linux NAT is not cone at all (gotcha G2 there).
- "symmetric": MASQUERADE --random-fully, a new port for every destination.
- "udp-blocked": cone, and every UDP packet from the LAN to the internet is dropped.
- "public": no router; the party sits on the bridge with a public address.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVER = "203.0.113.1"  # coturn and the room server; TEST-NET-3, never routed anywhere
TURN_PORT = 3478
SIGNAL_PORT = 8765
# The internet's default route: a neighbour that does not exist, so that packets coturn sends to
# private addresses vanish instead of failing with "Network is unreachable", which makes coturn
# drop the whole allocation (gotcha G1).
BLACKHOLE = "203.0.113.254"
# coturn refuses to relay to these (the production hardening; also avoids gotcha G1).
PRIVATE_RANGES = ("10.0.0.0-10.255.255.255", "172.16.0.0-172.31.255.255",
                  "192.168.0.0-192.168.255.255")

KINDS = ("cone", "symmetric", "udp-blocked", "public")

# What every process of the tests gets: the system tools even where a user's PATH lacks sbin,
# and none of mpc-net's configuration variables, so that each test says all it wants.
ENVIRONMENT = {name: value for name, value in os.environ.items()
               if name not in ("MPC_NET_ICE", "MPC_NET_TURN_SECRET")}
ENVIRONMENT["PATH"] = ENVIRONMENT.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child before exec: a crashed test run must not leave processes behind."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class SandboxError(Exception):
    pass


class Sandbox:
    """The process whose mount and network namespaces hold all the test namespaces."""

    def __init__(self, userns: bool) -> None:
        self.userns = userns
        self._holder = subprocess.Popen(
            ["unshare", *(["--user", "--map-root-user"] if userns else []), "--mount", "--net",
             "sh", "-c", "mount -t tmpfs -o mode=0755 tmpfs /run && echo ready && "
                         "exec cat >/dev/null"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=ENVIRONMENT, preexec_fn=_die_with_parent)
        ready, _, _ = select.select([self._holder.stdout], [], [], 10)
        line = self._holder.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self._holder.kill()
            _, err = self._holder.communicate()
            raise SandboxError(f"`unshare{' --user' if userns else ''} --mount --net` failed: "
                               f"{err.decode(errors='replace').strip() or 'no output'}")
        # --preserve-credentials: entering a user namespace made by --map-root-user may not call
        # setgroups; the caller's own uid is root in there anyway.
        self._prefix = ["nsenter", f"--target={self._holder.pid}",
                        *(["--user", "--preserve-credentials"] if userns else []),
                        "--mount", "--net"]
        # The sandbox's own network namespace has nothing but a loopback interface, which
        # makes it a quiet place for MPyC's reference runs over TCP.
        self.run("ip", "link", "set", "lo", "up", check=False)
        probe = self.run("ip", "netns", "add", "mpcnet-probe", check=False)
        self.run("ip", "netns", "del", "mpcnet-probe", check=False)
        if probe.returncode != 0:
            self.close()
            raise SandboxError(f"`ip netns add` in the sandbox failed: {probe.stderr.strip()}")

    @classmethod
    def start(cls) -> Sandbox:
        """A sandbox as root if we are root, else (or if that fails) in a user namespace."""
        force_userns = os.environ.get("MPC_NET_NAT_USERNS") == "1"
        modes = [True] if force_userns or os.geteuid() != 0 else [False, True]
        errors = []
        for userns in modes:
            try:
                return cls(userns)
            except (SandboxError, OSError) as exc:
                errors.append(str(exc))
        raise SandboxError(
            "cannot build network namespaces on this machine: " + "; ".join(errors) +
            ". The NAT tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) or unprivileged user "
            "namespaces (sysctl user.max_user_namespaces > 0; Docker: --privileged)")

    @property
    def mode(self) -> str:
        return "user namespace (unshare -Urnm)" if self.userns else "root (unshare -nm)"

    def command(self, *argv: str, ns: str | None = None, cwd: str | os.PathLike = "/") -> list[str]:
        """`argv` as run inside network namespace `ns` of the sandbox (or the sandbox's own)."""
        return [*self._prefix, f"--wd={cwd}", *(["ip", "netns", "exec", ns] if ns else []), *argv]

    def run(self, *argv: str, ns: str | None = None, check: bool = True, timeout: float = 30,
            cwd: str | os.PathLike = "/") -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*argv, ns=ns, cwd=cwd), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env=ENVIRONMENT)
        if check and done.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} (in {ns or 'the sandbox'}) exited with "
                               f"{done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def spawn(self, argv: list[str], ns: str, *, cwd: str | os.PathLike = "/",
              **kwargs) -> subprocess.Popen:
        """A process in `ns`. nsenter and `ip netns exec` exec, so its pid is the program's.

        The process is killed when the thread that started it ends (PR_SET_PDEATHSIG, so that
        a killed test run leaves nothing behind): start long-lived processes from the main
        thread."""
        return subprocess.Popen(self.command(*argv, ns=ns, cwd=cwd), env=ENVIRONMENT,
                                preexec_fn=_die_with_parent, **kwargs)

    def namespaces(self) -> list[str]:
        listing = self.run("ip", "netns", "list").stdout
        return [line.split()[0] for line in listing.splitlines() if line.strip()]

    def close(self) -> None:
        if self._holder.poll() is None:
            self._holder.stdin.close()
            try:
                self._holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()
        for stream in (self._holder.stdout, self._holder.stderr):
            stream.close()


@dataclass(frozen=True)
class Site:
    """Where party `index` sits: its namespace, its address, and its router if it has one."""

    index: int
    kind: str
    ns: str
    router: str | None
    address: str  # the party's own (host candidate) address
    public: str  # the address the internet sees: the router's WAN or the party's own


class Topology:
    """The internet namespace and, per party, a router and a party namespace."""

    def __init__(self, sandbox: Sandbox, name: str, kinds: list[str]) -> None:
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown NAT kind {kind!r}; one of {KINDS}")
        self.sandbox = sandbox
        self.name = name
        self.inet = f"{name}-inet"
        self.sites = []
        for i, kind in enumerate(kinds):
            if kind == "public":
                address = f"203.0.113.{21 + i}"
                self.sites.append(Site(i, kind, f"{name}-p{i}", None, address, address))
            else:
                self.sites.append(Site(i, kind, f"{name}-p{i}", f"{name}-r{i}",
                                       f"10.0.{i + 1}.2", f"203.0.113.{11 + i}"))

    @property
    def namespaces(self) -> list[str]:
        names = [self.inet]
        for site in self.sites:
            names += [site.router, site.ns] if site.router else [site.ns]
        return names

    def up(self) -> None:
        try:
            self.sandbox.run("sh", "-ec", self._script(), timeout=60)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Kill whatever still runs in our namespaces, then delete them (veths go with them)."""
        existing = set(self.sandbox.namespaces())
        for ns in reversed(self.namespaces):
            if ns not in existing:
                continue
            pids = self.sandbox.run("ip", "netns", "pids", ns, check=False).stdout.split()
            if pids:
                self.sandbox.run("kill", "-KILL", *pids, check=False)
            self.sandbox.run("ip", "netns", "del", ns, check=False)
        left = set(self.namespaces) & set(self.sandbox.namespaces())
        if left:
            raise SandboxError(f"namespaces left behind: {sorted(left)}")

    def _script(self) -> str:
        inet = self.inet
        lines = [
            f"ip netns add {inet}",
            f"ip -n {inet} link set lo up",
            f"ip -n {inet} link add br0 type bridge",
            f"ip -n {inet} addr add {SERVER}/24 dev br0",
            *_link_up(inet, "br0"),
            f"ip -n {inet} neigh add {BLACKHOLE} lladdr 02:00:00:00:00:fe dev br0 nud permanent",
            f"ip -n {inet} route add default via {BLACKHOLE} dev br0",
        ]
        for site in self.sites:
            p, r, i = site.ns, site.router, site.index
            lines += [f"ip netns add {p}", f"ip -n {p} link set lo up"]
            if r is None:  # on the bridge, with a public address
                lines += [
                    f"ip -n {p} link add eth0 type veth peer name up{i} netns {inet}",
                    *_link_up(inet, f"up{i}", "master br0"),
                    f"ip -n {p} addr add {site.address}/24 dev eth0",
                    *_link_up(p, "eth0"),
                ]
                continue
            lan = site.address.rsplit(".", 1)[0]
            ipt = f"ip netns exec {r} iptables -w"
            lines += [
                f"ip netns add {r}",
                f"ip -n {r} link set lo up",
                f"ip -n {r} link add wan type veth peer name up{i} netns {inet}",
                *_link_up(inet, f"up{i}", "master br0"),
                f"ip -n {r} addr add {site.public}/24 dev wan",
                *_link_up(r, "wan"),
                f"ip -n {r} link add lan type veth peer name eth0 netns {p}",
                f"ip -n {r} addr add {lan}.1/24 dev lan",
                *_link_up(r, "lan"),
                f"ip -n {p} addr add {site.address}/24 dev eth0",
                *_link_up(p, "eth0"),
                f"ip -n {p} route add default via {lan}.1",
                f"ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1",
                # A home router's firewall: nothing unsolicited comes in from the WAN.
                f"{ipt} -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                f"{ipt} -A INPUT -i wan -j DROP",
                f"{ipt} -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                f"{ipt} -A FORWARD -i wan -j DROP",
                f"{ipt} -t nat -A POSTROUTING -o wan -j MASQUERADE"
                + (" --random-fully" if site.kind == "symmetric" else ""),
            ]
            if site.kind == "udp-blocked":
                lines.append(f"{ipt} -A FORWARD -i lan -p udp -j DROP")
        return "\n".join(lines) + "\n"


def _link_up(ns: str, device: str, *options: str) -> list[str]:
    """Bring a device up without an IPv6 link-local address: one would turn valid a second or
    two later, and Chromium, seeing the network change, fails the requests then in flight
    (net::ERR_NETWORK_CHANGED) in the middle of a test."""
    return [f"ip -n {ns} link set {device} addrgenmode none",
            " ".join(["ip", "-n", ns, "link", "set", device, *options, "up"])]


def wait_for(predicate, what: str, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def listening(sandbox: Sandbox, ns: str, protocol: str, address: str, port: int) -> bool:
    """Is something in `ns` listening on address:port (protocol "tcp" or "udp")?"""
    done = sandbox.run("ss", "-Hln", "--tcp" if protocol == "tcp" else "--udp", ns=ns,
                       check=False)
    return re.search(rf"\s{re.escape(address)}:{port}\s", done.stdout + " ") is not None


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({exc})"
    return "\n".join(text.splitlines()[-lines:])
