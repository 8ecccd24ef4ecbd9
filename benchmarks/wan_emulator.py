"""A wide-area network in one process: delay, a bandwidth cap and loss between namespaces.

This kernel has no `sch_netem`, so `tc netem` cannot help. Instead every network namespace
gets a TUN device (MTU 1500) whose other end this process holds; all of them share one /24, so
each packet a namespace sends to another comes up here, and goes down the destination's TUN
device after:

- loss: dropped with probability LOSS (seeded: the same seed drops the same packets of the
  same traffic);
- bandwidth: sent through the sender's uplink of BANDWIDTH bit/s, one packet after the other,
  with a drop-tail queue of QUEUE_MS of that link's time (a home router's buffer);
- delay: RTT/2 after it left the uplink, so that a round trip between any two namespaces
  takes RTT.

Packets wait in a heap serviced by `select()` with microsecond timeouts (epoll's millisecond
timeouts made round trips 0.7-0.9 ms short). The forwarding costs about 16 us of CPU per
packet; `wan.py` measures the round trip it adds on top of RTT and reports it.

Commands on stdin, one a line, each answered with one line on stdout:
`seed N` (restart the loss pattern), `stats` (packets forwarded and dropped, JSON).

Run as root, or in a user namespace that owns the network namespaces:
    python wan_emulator.py forward --rtt-ms 40 NS=10.77.0.10 NS2=10.77.0.11 ...
Also `echo PORT` and `ping HOST PORT COUNT`: a UDP echo and its client, to measure a path.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import random
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import TextIO

PREFIX_LENGTH = 24
MTU = 1500
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_READS_PER_WAKEUP = 64  # per device, so that one busy sender cannot starve the others


class Link:
    """One namespace's TUN device and the uplink its packets leave through."""

    def __init__(self, namespace: str, address: str, name: str) -> None:
        self.namespace = namespace
        self.address = socket.inet_aton(address)
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(self.fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
        # The device moves into its namespace; this process keeps its end wherever it is.
        ip("link", "set", name, "netns", namespace)
        for command in (["link", "set", "lo", "up"],
                        ["-6", "addr", "flush", "dev", name],
                        ["addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", name],
                        ["link", "set", name, "mtu", str(MTU), "up"]):
            ip("-n", namespace, *command)
        self.free_at = 0.0  # when the uplink has sent everything queued on it


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Forwarder:
    def __init__(self, links: list[Link], rtt: float, bandwidth: float | None, loss: float,
                 queue: float, trace: TextIO | None = None) -> None:
        self.links = links
        self.by_address = {link.address: link for link in links}
        self.by_fd = {link.fd: link for link in links}
        self.delay = rtt / 2
        self.bandwidth = bandwidth  # bit/s; None: no cap
        self.loss = loss
        self.queue = queue  # seconds of uplink time a packet may wait behind others
        self.random = random.Random(0)
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.sequence = 0
        self.counts = {"forwarded": 0, "lost": 0, "queue_drops": 0}
        self.trace = trace

    def run(self) -> None:
        inputs = [sys.stdin.fileno(), *self.by_fd]
        while True:
            timeout = max(0.0, self.heap[0][0] - time.monotonic()) if self.heap else None
            readable, _, _ = select.select(inputs, [], [], timeout)
            for fd in readable:
                if fd == sys.stdin.fileno():
                    if not self.command(sys.stdin.readline()):
                        return
                else:
                    self.receive(self.by_fd[fd])
            now = time.monotonic()
            while self.heap and self.heap[0][0] <= now:
                _, _, fd, packet = heapq.heappop(self.heap)
                try:
                    os.write(fd, packet)
                except BlockingIOError:
                    self.counts["queue_drops"] += 1  # the namespace does not read: as a NIC

    def receive(self, source: Link) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                packet = os.read(source.fd, 65536)
            except BlockingIOError:
                return
            if len(packet) < 20 or packet[0] >> 4 != 4:
                continue  # IPv4 only: the namespaces have no other addresses
            destination = self.by_address.get(packet[16:20])
            if destination is None:
                continue
            if self.trace:
                self.trace.write(f"{time.time():.6f} {describe(packet)}\n")
            if self.loss and self.random.random() < self.loss:
                self.counts["lost"] += 1
                continue
            now = time.monotonic()
            sent = now
            if self.bandwidth:
                start = max(now, source.free_at)
                if start - now > self.queue:
                    self.counts["queue_drops"] += 1
                    continue
                sent = source.free_at = start + len(packet) * 8 / self.bandwidth
            self.sequence += 1
            heapq.heappush(self.heap, (sent + self.delay, self.sequence, destination.fd, packet))
            self.counts["forwarded"] += 1

    def command(self, line: str) -> bool:
        words = line.split()
        if not words:
            return bool(line)  # end of input: the driver has gone
        if words[0] == "seed" and len(words) == 2:
            self.random.seed(int(words[1]))
            answer = "ok"
        elif words[0] == "stats":
            answer = json.dumps(self.counts)
        else:
            answer = f"error: unknown command {line.strip()!r}"
        print(answer, flush=True)
        return True


def echo(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        while True:
            data, peer = sock.recvfrom(2048)
            sock.sendto(data, peer)


def ping(host: str, port: int, count: int) -> None:
    """Median round trip of `count` UDP pings, spaced apart, in ms (a lost one is sent again)."""
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        while len(times) < count:
            started = time.perf_counter()
            sock.sendto(b"ping", (host, port))
            try:
                sock.recv(2048)
            except TimeoutError:
                continue
            times.append(time.perf_counter() - started)
            time.sleep(0.01)
    print(f"{statistics.median(times) * 1000:.3f}", flush=True)


_DTLS_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}


def describe(packet: bytes) -> str:
    """One line for the packet trace: addresses, ports, size, and what it carries (TCP flags,
    STUN or DTLS record type) as far as the header tells."""
    header = (packet[0] & 0x0F) * 4
    source, destination = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    protocol = packet[9]
    sport, dport = struct.unpack("!HH", packet[header:header + 4])
    what = f"proto {protocol}"
    if protocol == 6:
        offset = (packet[header + 12] >> 4) * 4
        flags = "".join(f for bit, f in zip(b"\x02\x10\x08\x01", "SAPF", strict=True)
                        if packet[header + 13] & bit)
        what = f"tcp {flags} payload {len(packet) - header - offset}"
    elif protocol == 17:
        first = packet[header + 8] if len(packet) > header + 8 else -1
        what = ("stun" if 0 <= first <= 3 else f"dtls {_DTLS_TYPES[first]}"
                if first in _DTLS_TYPES else f"udp {first}")
    return f"{source}:{sport} > {destination}:{dport} {len(packet)} {what}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    forward = sub.add_parser("forward")
    forward.add_argument("--rtt-ms", type=float, default=0.0)
    forward.add_argument("--bandwidth-mbit", type=float, default=None)
    forward.add_argument("--loss", type=float, default=0.0, help="fraction of packets lost")
    forward.add_argument("--queue-ms", type=float, default=50.0)
    forward.add_argument("--trace", type=argparse.FileType("w"),
                         help="write a line for every packet here (time, addresses, kind)")
    forward.add_argument("links", nargs="+", metavar="NAMESPACE=ADDRESS")
    sub.add_parser("echo").add_argument("port", type=int)
    pinger = sub.add_parser("ping")
    pinger.add_argument("host")
    pinger.add_argument("port", type=int)
    pinger.add_argument("count", type=int)
    options = parser.parse_args()
    if options.command == "echo":
        echo(options.port)
    elif options.command == "ping":
        ping(options.host, options.port, options.count)
    else:
        links = [Link(*spec.split("=", 1), f"wan{i}") for i, spec in enumerate(options.links)]
        bandwidth = options.bandwidth_mbit * 1e6 if options.bandwidth_mbit else None
        forwarder = Forwarder(links, options.rtt_ms / 1000, bandwidth, options.loss,
                              options.queue_ms / 1000, options.trace)
        print("ready", flush=True)
        forwarder.run()


if __name__ == "__main__":
    main()
