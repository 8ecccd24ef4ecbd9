"""What the mesh state machine (state.py) is told, and what it asks its driver to do."""

from __future__ import annotations

import dataclasses
import enum


class Link(enum.Enum):
    """Where the connection to one other party stands; the values are what a person reads."""

    ABSENT = "not in the room yet"
    PRESENT = "in the room"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    UP = "connected, authenticated"
    INTERRUPTED = "interrupted"  # mid-run, until liveness.Outage gives the party up
    LEFT = "left the room"  # before its channel was up; it may return in time
    REFUSED = "authentication failed"
    LOST = "lost"


# -- events -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Joined:
    """We (re)joined the room; `peers` are there already."""

    peers: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class PeerJoined:
    party: int


@dataclasses.dataclass(frozen=True)
class PeerLeft:
    party: int
    channel_open: bool  # its side of the handshake is done: ours goes on over the channel
    tried: str | None  # what was tried to reach it, if anything


@dataclasses.dataclass(frozen=True)
class RosterKnown:
    """Every party's key is known (at once with a roster file; in trust-room-server mode once
    the room server has relayed them all)."""


@dataclasses.dataclass(frozen=True)
class AttemptStarted:
    """A new peer connection to `party` answers its offer."""

    party: int


@dataclasses.dataclass(frozen=True)
class AttemptFailed:
    """The current peer connection to `party` failed before its channel opened."""

    party: int


@dataclasses.dataclass(frozen=True)
class ChannelOpen:
    party: int


@dataclasses.dataclass(frozen=True)
class Authenticated:
    party: int
    label: str  # how the roster names the party
    path: str  # the selected candidate pair


@dataclasses.dataclass(frozen=True)
class Refused:
    """The handshake on a channel to `party` failed; `current` if on the latest attempt."""

    party: int
    reason: str
    current: bool = True


@dataclasses.dataclass(frozen=True)
class ChannelDown:
    """The transport's current channel to `party` died (`resumable`: MPyC has the stream)."""

    party: int
    reason: str
    resumable: bool


@dataclasses.dataclass(frozen=True)
class RepairProblem:
    """Restoring connections went wrong in a way that concerns every interrupted party."""

    reason: str


@dataclasses.dataclass(frozen=True)
class CheckComplete:
    """Every party's check-code nonce is in."""


@dataclasses.dataclass(frozen=True)
class Tick:
    """Time passed (the driver sends one at `MeshState.next_deadline`)."""


Event = (Joined | PeerJoined | PeerLeft | RosterKnown | AttemptStarted | AttemptFailed
         | ChannelOpen | Authenticated | Refused | ChannelDown | RepairProblem | CheckComplete
         | Tick)


# -- actions ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Offer:
    """Make a new peer connection to `party` (dropping the current one) and send an offer."""

    party: int


@dataclasses.dataclass(frozen=True)
class Close:
    """Close the current peer connection to `party`, if any."""

    party: int


@dataclasses.dataclass(frozen=True)
class Fail:
    """Building the mesh failed."""

    message: str


@dataclasses.dataclass(frozen=True)
class Unreachable:
    """Building the mesh failed: no channel to `party` in time (the driver says what was
    tried)."""

    party: int


@dataclasses.dataclass(frozen=True)
class Lose:
    """Give `party` up mid-run: the run fails."""

    party: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Repair:
    """Rejoin the room (unless already there) to restore interrupted channels."""


@dataclasses.dataclass(frozen=True)
class Report:
    """A line for the log (`progress`: the progress logger, shown on a terminal)."""

    level: int
    text: str
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class Show:
    """`party`'s link changed state: for observers (the page's status board)."""

    party: int
    link: Link


Action = Offer | Close | Fail | Unreachable | Lose | Repair | Report | Show
