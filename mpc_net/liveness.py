"""Telling a quiet peer from a dead one, without I/O: the caller supplies the clock."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Liveness:
    """Keepalive bookkeeping for one channel.

    A peer whose process dies sends nothing, and WebRTC itself notices only when ICE consent
    expires (about 30 s in aioice). Each side therefore sends something at least every
    `interval` seconds and declares the peer lost after `timeout` seconds of silence.
    """

    interval: float
    timeout: float
    last_sent: float
    last_received: float

    @classmethod
    def starting(cls, now: float, interval: float, timeout: float) -> Liveness:
        if not 0 < interval < timeout:
            raise ValueError("need 0 < keepalive interval < peer timeout")
        return cls(interval, timeout, now, now)

    def sent(self, now: float) -> None:
        self.last_sent = now

    def received(self, now: float) -> None:
        self.last_received = now

    def silent_for(self, now: float) -> float:
        return now - self.last_received

    def is_dead(self, now: float) -> bool:
        return self.silent_for(now) >= self.timeout

    def keepalive_due(self, now: float) -> bool:
        return now - self.last_sent >= self.interval
