"""The one place that decides whether a peer is alive, interrupted or lost, without I/O: the
caller supplies the clock and acts on the answer.

Two questions, two pieces:
- `Liveness`: is one channel's peer still there? (silence past a timeout means no)
- `Outage`: what does a channel that went down mean for its party? While connecting, a short
  grace and then a failed attempt; mid-run, an interruption until the outage limit (when the
  stream can resume) and then a lost party.
"""

from __future__ import annotations

from .values import Value

# Seconds a channel lost while connecting waits before it fails the attempt: such a loss is
# often the echo of another party's failure (it gave up and closed everything), and a refusal
# of our own that is about to come says more, so it gets a moment to win.
LOSS_GRACE = 2.0


class Alive(Value):
    """Nothing to do."""


class Interrupted(Value):
    """The channel is down; the party counts as lost at `until` unless a new channel is up."""

    until: float
    reason: str


class Lost(Value):
    """Give the party up; `reason` says why."""

    reason: str


Verdict = Alive | Interrupted | Lost
ALIVE = Alive()


class Liveness(Value, mutable=True):
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

    def verdict(self, now: float) -> Alive | Lost:
        if self.is_dead(now):
            return Lost(f"nothing received for {self.silent_for(now):.1f} s")
        return ALIVE


class Outage(Value, mutable=True):
    """One party's answer to its channel going down (0 `outage_limit`: a lost channel mid-run
    ends the run)."""

    party: int
    outage_limit: float
    grace: float = LOSS_GRACE
    verdict: Verdict = ALIVE
    connecting: bool = False  # the verdict was given before the mesh stood
    problem: str | None = None  # the last thing that went wrong while restoring

    def channel_down(self, now: float, reason: str, *, connected: bool,
                     resumable: bool) -> Verdict:
        """The current channel died: `connected` once the mesh stood, `resumable` if the stream
        may go on over a new channel."""
        if isinstance(self.verdict, Interrupted | Lost):
            return self.verdict  # the first word stands
        self.connecting = not connected
        if not connected:
            self.verdict = Interrupted(now + self.grace,
                                       f"lost the connection to party {self.party}: {reason}")
        elif resumable and self.outage_limit > 0:
            self.verdict = Interrupted(now + self.outage_limit, reason)
        else:
            self.verdict = Lost(reason)
        return self.verdict

    def restored(self) -> None:
        self.verdict = ALIVE
        self.problem = None

    def check(self, now: float) -> Verdict:
        """The verdict at `now`: an interruption past its deadline is a loss."""
        verdict = self.verdict
        if isinstance(verdict, Interrupted) and now >= verdict.until:
            if self.connecting:
                self.verdict = Lost(verdict.reason)
            else:
                detail = f" (last problem: {self.problem})" if self.problem else ""
                self.verdict = Lost(f"the connection broke and was not restored within "
                                    f"{self.outage_limit:g} s{detail}")
        return self.verdict
