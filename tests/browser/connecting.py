"""What connecting costs, as a person waits for it, for `measure.py --connect`: from the last
party's Join (the last page's click, or the last native party's start) to "All parties connected"
on every party; and where a page's part of that goes.

TRACE, a script each page runs before its own, notes when things happen in the page, on the
wall clock (`performance.timeOrigin` and `performance.now()`), which every page and this process
share: the Join, what the page shows (status, the parties table, its log), the room server's
messages, and each peer connection's descriptions, candidates, ICE and DTLS states and channel.
It works on any version of the page (for `--baseline`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

# Labels of TRACE's notes: the form's submission, and the status once all are connected.
JOINED = "Join pressed"
CONNECTED = "status: All parties connected"

TRACE = """(() => {
  const now = () => performance.timeOrigin + performance.now();
  const trace = [];
  window.connectTrace = trace;
  const note = (label) => trace.push([now(), label]);
  const summary = (text) => {
    try {
      const message = JSON.parse(text);
      const data = message.data || {};
      const what = data.description ? data.description.type : Object.keys(data)[0] || "";
      const peer = "to" in message ? ` to ${message.to}` : "from" in message
        ? ` from ${message.from}` : "";
      return `${message.type}${what ? " " + what : ""}${peer}`;
    } catch {
      return "text";
    }
  };
  const Socket = window.WebSocket;
  window.WebSocket = class extends Socket {
    constructor(...args) {
      super(...args);
      note("room: connecting");
      this.addEventListener("open", () => note("room: open"));
      this.addEventListener("message", (event) => note(`room: got ${summary(event.data)}`));
    }
    send(data) {
      note(`room: sent ${summary(data)}`);
      super.send(data);
    }
  };
  const Connection = window.RTCPeerConnection;
  let made = 0;
  window.RTCPeerConnection = class extends Connection {
    constructor(...args) {
      super(...args);
      const pc = `pc${made++}`;
      this.traceName = pc;
      note(`${pc}: new`);
      this.addEventListener("icegatheringstatechange",
        () => note(`${pc}: gathering ${this.iceGatheringState}`));
      this.addEventListener("icecandidate", (event) => note(`${pc}: candidate ${
        event.candidate ? `${event.candidate.type} ${event.candidate.address}` : "end"}`));
      this.addEventListener("iceconnectionstatechange",
        () => note(`${pc}: ice ${this.iceConnectionState}`));
      this.addEventListener("connectionstatechange",
        () => note(`${pc}: connection ${this.connectionState}`));
    }
    async createOffer(...args) {
      const offer = await super.createOffer(...args);
      note(`${this.traceName}: offer made`);
      return offer;
    }
    async createAnswer(...args) {
      const answer = await super.createAnswer(...args);
      note(`${this.traceName}: answer made`);
      return answer;
    }
    async setLocalDescription(...args) {
      await super.setLocalDescription(...args);
      note(`${this.traceName}: local ${this.localDescription.type} set`);
    }
    async setRemoteDescription(...args) {
      await super.setRemoteDescription(...args);
      note(`${this.traceName}: remote ${this.remoteDescription.type} set`);
      const dtls = this.sctp && this.sctp.transport;
      if (dtls && !dtls.traced) {
        dtls.traced = true;
        dtls.addEventListener("statechange", () => note(`${this.traceName}: dtls ${dtls.state}`));
      }
    }
    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      const pc = this.traceName;
      let got = 0;
      channel.addEventListener("open", () => note(`${pc}: channel open`));
      channel.addEventListener("message", () => got++ || note(`${pc}: channel first message`));
      return channel;
    }
  };
  // What the page shows, noted as it is set (Python sets it synchronously, and an observer
  // would hear of it only once Python yields): its status, each party's state in the table
  // (the handshake done is "authenticated"), and its log's lines.
  const text = Object.getOwnPropertyDescriptor(Node.prototype, "textContent");
  let logged = 0;
  Object.defineProperty(Node.prototype, "textContent", {
    ...text,
    set(value) {
      text.set.call(this, value);
      if (this.id === "status") {
        note(`status: ${value}`);
      } else if (this.id === "log") {
        for (const line of String(value).slice(logged).split("\\n")) line && note(`log: ${line}`);
        logged = String(value).length;
      } else if (this.tagName === "TD" && this.cellIndex === 1 && this.closest("#peers")) {
        note(`party ${this.parentElement.dataset.party}: ${value}`);
      }
    },
  });
  addEventListener("submit", () => note("Join pressed"), true);
})()"""


def page_times(trace: list[list]) -> tuple[float, float]:
    """When the page's Join was pressed and when it first had all parties connected after, in
    seconds of the wall clock."""
    joined = max(millis for millis, label in trace if label == JOINED)
    connected = min(millis for millis, label in trace
                    if label.startswith(CONNECTED) and millis >= joined)
    return joined / 1000, connected / 1000


def waited(joins: Iterable[float], connected: Iterable[float]) -> float:
    """What the parties waited for: from the last Join to the last party connected."""
    return max(connected) - max(joins)


def steps(trace: list[list], since: float) -> list[tuple[float, str]]:
    """A page's trace as (seconds after `since`, what) in order; the ICE candidates of one
    kind and address of a peer connection make one line (the first one's time, and how many)."""
    lines: list[tuple[float, str]] = []
    candidates: dict[str, int] = {}  # label -> its line's index
    for millis, label in sorted(trace, key=lambda each: each[0]):
        if label in candidates:
            at, shown = lines[candidates[label]]
            count = int(shown.rpartition(" x")[2]) + 1 if shown != label else 2
            lines[candidates[label]] = (at, f"{label} x{count}")
            continue
        if ": candidate " in label:
            candidates[label] = len(lines)
        lines.append((millis / 1000 - since, label))
    return lines


class TimedLines:
    """A pipe's lines as they come, each with the time it was read (by a thread of its own)."""

    def __init__(self, pipe) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append((time.time(), line))

    def text(self) -> str:
        """Everything, once the pipe has ended."""
        self._thread.join()
        return "".join(line for _, line in self.lines)

    def first(self, words: str) -> float:
        """When the first line holding `words` came, once the pipe has ended."""
        self._thread.join()
        return next(at for at, line in self.lines if words in line)
