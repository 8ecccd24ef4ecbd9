"""What the mesh state machine (state.py) is told, and what it asks its driver to do."""

from __future__ import annotations

import enum

from ..values import Value


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

class Joined(Value):
    """We (re)joined the room; `peers` are there already."""

    peers: tuple[int, ...]


class PeerJoined(Value):
    party: int


class PeerLeft(Value):
    party: int
    channel_open: bool  # its side of the handshake is done: ours goes on over the channel
    tried: str | None  # what was tried to reach it, if anything


class RosterKnown(Value):
    """Every party's key is known (at once with a roster file; in trust-room-server mode once
    the room server has relayed them all)."""


class AttemptStarted(Value):
    """A new peer connection to `party` answers its offer."""

    party: int


class AttemptFailed(Value):
    """The current peer connection to `party` failed before its channel opened."""

    party: int


class ChannelOpen(Value):
    party: int


class Authenticated(Value):
    party: int
    label: str  # how the roster names the party
    path: str  # the selected candidate pair


class Refused(Value):
    """The handshake on a channel to `party` failed; `current` if on the latest attempt."""

    party: int
    reason: str
    current: bool = True


class ChannelDown(Value):
    """The transport's current channel to `party` died (`resumable`: MPyC has the stream)."""

    party: int
    reason: str
    resumable: bool


class RepairProblem(Value):
    """Restoring connections went wrong in a way that concerns every interrupted party."""

    reason: str


class CheckComplete(Value):
    """Every party's check-code nonce is in."""


class Tick(Value):
    """Time passed (the driver sends one at `MeshState.next_deadline`)."""


Event = (Joined | PeerJoined | PeerLeft | RosterKnown | AttemptStarted | AttemptFailed
         | ChannelOpen | Authenticated | Refused | ChannelDown | RepairProblem | CheckComplete
         | Tick)


# -- actions ------------------------------------------------------------------------------------

class Offer(Value):
    """Make a new peer connection to `party` (dropping the current one) and send an offer."""

    party: int


class Close(Value):
    """Close the current peer connection to `party`, if any."""

    party: int


class Fail(Value):
    """Building the mesh failed."""

    message: str


class Unreachable(Value):
    """Building the mesh failed: no channel to `party` in time (the driver says what was
    tried)."""

    party: int


class Lose(Value):
    """Give `party` up mid-run: the run fails."""

    party: int
    reason: str


class Repair(Value):
    """Rejoin the room (unless already there) to restore interrupted channels."""


class Report(Value):
    """A line for the log (`progress`: the progress logger, shown on a terminal)."""

    level: int
    text: str
    progress: bool = False


class Show(Value):
    """`party`'s link changed state: for observers (the page's status board)."""

    party: int
    link: Link


Action = Offer | Close | Fail | Unreachable | Lose | Repair | Report | Show
