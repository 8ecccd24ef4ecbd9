"""The mesh without I/O: one record per other party, fed events with the time, answering with
actions and the next deadline (in the manner of signaling/rooms.py).

Roles are fixed by party index: the lower index offers, so offers never cross. Building the mesh
ends when every link is up and the check-code exchange is complete; from then on a channel that
goes down is restored within the outage limit or loses its party (liveness.Outage decides).
"""

from __future__ import annotations

import logging

from ..liveness import Interrupted, Lost, Outage
from ..values import Value
from .events import (
    Action,
    AttemptFailed,
    AttemptStarted,
    Authenticated,
    ChannelDown,
    ChannelOpen,
    CheckComplete,
    Close,
    Event,
    Fail,
    Joined,
    Link,
    Lose,
    Offer,
    PeerJoined,
    PeerLeft,
    Refused,
    Repair,
    RepairProblem,
    Report,
    RosterKnown,
    Show,
    Tick,
    Unreachable,
)

PROGRESS_INTERVAL = 10.0  # seconds between progress lines while connecting
ATTEMPTING = (Link.CONNECTING, Link.AUTHENTICATING)


class Timeouts(Value, mutable=True):
    join: float = 300.0  # for every party to show up in the room
    connect: float = 20.0  # for one channel, once both parties are in the room
    outage: float = 0.0  # for a channel lost mid-run to come back (0: the run ends)


class PeerLink(Value, mutable=True):
    """Everything this party knows of its connection to one other party."""

    party: int
    outage: Outage
    state: Link = Link.ABSENT
    present: bool = False  # in the room now
    since: float | None = None  # when the current attempt (or the one it left) began
    tried: str | None = None  # LEFT: what was tried to reach it


class MeshState:
    def __init__(self, pid: int, parties: int, room: str, now: float, timeouts: Timeouts, *,
                 roster_known: bool) -> None:
        self.pid = pid
        self.room = room
        self.timeouts = timeouts
        self.started = now
        self.links = {j: PeerLink(j, Outage(j, timeouts.outage))
                      for j in range(parties) if j != pid}
        self.roster_known = roster_known
        self.check_complete = False
        self.connected = False  # the mesh stood once: from then on, repairs
        self._next_progress = now + PROGRESS_INTERVAL

    def left_room(self) -> None:
        """We left the room (or lost it): whoever is there is known again when we rejoin."""
        for link in self.links.values():
            link.present = False

    @property
    def done(self) -> bool:
        """Building is over: every link is up and the check code is known."""
        return self.check_complete and all(k.state is Link.UP for k in self.links.values())

    @property
    def repairing(self) -> bool:
        return any(k.state is Link.INTERRUPTED for k in self.links.values())

    @property
    def present(self) -> list[int]:
        return [j for j, k in self.links.items() if k.present]

    def handle(self, event: Event, now: float) -> list[Action]:
        actions: list[Action] = []
        match event:
            case Joined(peers):
                self.left_room()
                for j in peers:
                    self._joined(self.links[j], now, actions)
            case PeerJoined(j):
                self._joined(self.links[j], now, actions)
            case PeerLeft(j, channel_open, tried):
                self._left(self.links[j], now, channel_open, tried, actions)
            case RosterKnown():
                self.roster_known = True
                for j in self.present:
                    self._offer_if_ours(self.links[j], now, actions)
            case AttemptStarted(j):
                self._attempt(self.links[j], now, actions)
            case AttemptFailed(j):
                self._retry(self.links[j], now, actions)
            case ChannelOpen(j):
                if self.links[j].state is Link.CONNECTING:
                    self._set(self.links[j], Link.AUTHENTICATING, actions)
            case Authenticated():
                self._authenticated(self.links[event.party], event, actions)
            case Refused(j, reason, current):
                self._refused(self.links[j], now, reason, current, actions)
            case ChannelDown(j, reason, resumable):
                self._down(self.links[j], now, reason, resumable, actions)
            case RepairProblem(reason):
                for link in self.links.values():
                    if link.state is Link.INTERRUPTED:
                        link.outage.problem = reason
            case CheckComplete():
                self.check_complete = True
            case Tick():
                pass
        self._expire(now, actions)
        return actions

    def next_deadline(self) -> float | None:
        """When the next Tick is due (None: nothing is timed)."""
        times = [k.outage.verdict.until for k in self.links.values()
                 if isinstance(k.outage.verdict, Interrupted)]
        if not self.connected:
            times += [self.started + self.timeouts.join, self._next_progress]
        for link in self.links.values():
            if link.since is not None and (link.state in ATTEMPTING or link.state is Link.LEFT
                                           or self._retries(link)):
                times.append(link.since + self.timeouts.connect)
        return min(times, default=None)

    def waiting(self, now: float) -> str:
        """Whom this party still waits for, and the time left until the first of them fails
        its deadline."""
        missing = [j for j, k in self.links.items() if k.state is not Link.UP]
        deadlines = [self.started + self.timeouts.join if self.links[j].since is None
                     else self.links[j].since + self.timeouts.connect for j in missing]
        left = max(0.0, min(deadlines, default=self.started + self.timeouts.join) - now)
        if not missing:  # every channel is up; the check-code messages are not all in
            return f"waiting for the check-code exchange: {left:.0f} s left"
        who = ("party " if len(missing) == 1 else "parties ") + ", ".join(map(str, missing))
        return f"waiting for {who}: {left:.0f} s left"

    # -- transitions ------------------------------------------------------------------------

    def _set(self, link: PeerLink, state: Link, actions: list[Action]) -> None:
        if link.state is not state:
            link.state = state
            actions.append(Show(link.party, state))

    def _joined(self, link: PeerLink, now: float, actions: list[Action]) -> None:
        link.present = True
        if link.state in (Link.ABSENT, Link.LEFT):
            link.since = link.tried = None
            self._set(link, Link.PRESENT, actions)
        self._offer_if_ours(link, now, actions)

    def _offer_if_ours(self, link: PeerLink, now: float, actions: list[Action]) -> None:
        """The lower index offers, once it knows every key and the peer is in the room."""
        if (self.roster_known and link.present and link.party > self.pid
                and link.state not in (Link.UP, Link.LOST)):
            actions.append(Offer(link.party))  # first: observers then see the new attempt
            self._attempt(link, now, actions)

    def _attempt(self, link: PeerLink, now: float, actions: list[Action]) -> None:
        link.since = now
        if link.state is not Link.INTERRUPTED:
            self._set(link, Link.CONNECTING, actions)

    def _retries(self, link: PeerLink) -> bool:
        """Whether a stalled repair attempt to this link is ours to make again."""
        return (self.connected and link.state is Link.INTERRUPTED and link.present
                and link.party > self.pid)

    def _retry(self, link: PeerLink, now: float, actions: list[Action]) -> None:
        """A repair attempt failed: drop it, and offer anew if that is ours to do."""
        if link.state is not Link.INTERRUPTED:
            return  # while building, the connect deadline says what failed
        link.since = None
        actions.append(Close(link.party))
        if self._retries(link):
            self._offer_if_ours(link, now, actions)

    def _left(self, link: PeerLink, now: float, channel_open: bool, tried: str | None,
              actions: list[Action]) -> None:
        link.present = False
        if link.state in (Link.UP, Link.LOST) or channel_open:
            # The channel stands on its own (or ours completes over it): the room server is
            # no longer needed.
            return
        if link.state is Link.INTERRUPTED:
            link.since = None
            actions.append(Close(link.party))
            return
        actions.append(Report(logging.INFO, f"party {link.party} left the room before "
                              f"connecting; waiting {self.timeouts.connect:g} s for it to return"))
        link.since = now if link.since is None else link.since
        link.tried = tried
        self._set(link, Link.LEFT, actions)
        actions.append(Close(link.party))

    def _authenticated(self, link: PeerLink, event: Authenticated, actions: list[Action]) -> None:
        if link.state is Link.INTERRUPTED:
            link.outage.restored()
            actions.append(Report(logging.WARNING, f"party {self.pid}: the connection to party "
                                  f"{link.party} is restored (path {event.path}); the stream "
                                  "goes on where it stopped"))
        elif link.state in ATTEMPTING:
            actions.append(Report(logging.INFO, f"party {self.pid}: channel to {event.label} open "
                                  f"and authenticated; path {event.path}"))
        else:
            return
        link.since = None
        self._set(link, Link.UP, actions)

    def _refused(self, link: PeerLink, now: float, reason: str, current: bool,
                 actions: list[Action]) -> None:
        if not self.connected:
            self._set(link, Link.REFUSED, actions)
            actions.append(Fail(reason))
            return
        # A repair: whoever answered may not have been the party (its seat in the room is
        # free once it has connected), so the next attempt may reach the real one.
        actions.append(Report(logging.WARNING, f"party {self.pid}: restoring the connection to "
                              f"party {link.party}: {reason}"))
        link.outage.problem = reason
        if current:
            self._retry(link, now, actions)

    def _down(self, link: PeerLink, now: float, reason: str, resumable: bool,
              actions: list[Action]) -> None:
        if link.state is Link.LOST:
            return
        verdict = link.outage.channel_down(now, reason, connected=self.connected,
                                           resumable=resumable)
        if isinstance(verdict, Lost):
            self._lose(link, verdict.reason, actions)
        elif self.connected and link.state is Link.INTERRUPTED:
            self._retry(link, now, actions)  # a repair channel died before it was linked
        elif self.connected:
            actions.append(Report(logging.WARNING, f"party {self.pid}: the connection to party "
                                  f"{link.party} was interrupted ({reason}); restoring it for "
                                  f"up to {self.timeouts.outage:g} s"))
            self._set(link, Link.INTERRUPTED, actions)
            link.since = None
            actions.append(Close(link.party))
            actions.append(Repair())
            # Already in the room restoring another link, with this party there too: no
            # rejoin follows to offer it, so offer now.
            self._offer_if_ours(link, now, actions)

    def _lose(self, link: PeerLink, reason: str, actions: list[Action]) -> None:
        link.since = None
        self._set(link, Link.LOST, actions)
        actions.append(Close(link.party))
        actions.append(Lose(link.party, reason))

    def _expire(self, now: float, actions: list[Action]) -> None:
        """Act on every deadline that has passed."""
        for link in self.links.values():
            verdict = link.outage.check(now)
            if isinstance(verdict, Lost) and link.state is not Link.LOST:
                if self.connected:
                    self._lose(link, verdict.reason, actions)
                else:
                    actions.append(Fail(verdict.reason))
            elif (link.since is not None and self._retries(link)
                  and now - link.since > self.timeouts.connect):
                self._offer_if_ours(link, now, actions)  # a stalled repair attempt
        if not self.connected:
            self._expire_building(now, actions)

    def _expire_building(self, now: float, actions: list[Action]) -> None:
        limit = self.timeouts.connect
        for link in self.links.values():
            if link.state in ATTEMPTING and link.since is not None and now - link.since > limit:
                actions.append(Unreachable(link.party))
            elif link.state is Link.LEFT and now - link.since > limit:
                actions.append(Fail(
                    f"could not connect to party {link.party} within {limit:g} s: it left the "
                    "room before the channel was up and did not return (did it fail? see its "
                    f"output); {link.tried or 'nothing was tried'}"))
        if now - self.started > self.timeouts.join:
            missing = [j for j, k in self.links.items() if not k.present]
            if not missing and all(k.state is Link.UP for k in self.links.values()):
                actions.append(Fail(f"the check-code exchange did not finish within "
                                    f"{self.timeouts.join:g} s: a party or the room server "
                                    "held back its messages"))
            else:
                actions.append(Fail(f"parties {missing} did not join room {self.room!r} "
                                    f"within {self.timeouts.join:g} s"))
        if now >= self._next_progress:
            while self._next_progress <= now:
                self._next_progress += PROGRESS_INTERVAL
            actions.append(Report(logging.INFO, self.waiting(now), progress=True))
