"""The keys a run uses and its check code: the roster (from the roster file, or in
trust-room-server mode from the keys the room server relays), the commit-then-reveal exchange
(checkcode.py) whose messages travel as signals, and what the room server says of other
rosters under our room's name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..auth import Roster, RosterError, decode_public_key
from ..checkcode import CheckCodeError, CheckExchange
from ..signaling.protocol import CheckCodeMessage
from .interfaces import MeshConfig, MeshError

logger = logging.getLogger("mpc_net.mesh")


class Agreement:
    def __init__(self, config: MeshConfig, send: Callable[[int, CheckCodeMessage], None]) -> None:
        self.config = config
        self._send = send  # a check-code message to one party
        self.roster: asyncio.Future[Roster] = asyncio.get_running_loop().create_future()
        if config.roster is not None:
            self.roster.set_result(config.roster)
        self._announced = {config.pid: config.identity.public_key}  # keys the room relayed
        self._check = CheckExchange(config.pid, config.parties)
        self.shown = False  # the check code is out: the exchange is complete
        self.other_roster_seen = False  # whether another roster uses our room's name

    def greet(self, j: int, key: str | None, present: list[int]) -> bool:
        """Party j is in the room (a newcomer, or back): tell it where the exchange stands and
        learn its key if needed. True if that completed the roster."""
        self._send(j, self._check.commit())
        if self._check.revealed:
            self._send(j, self._check.reveal())
        if self.roster.done():
            return False
        self._learn_key(j, key)
        if self.roster.done():
            self.reveal_when_ready(present)
            return True
        return False

    def _learn_key(self, j: int, key: str | None) -> None:
        """Trust-room-server mode: build the roster from the keys the room server relays."""
        if key is None:
            raise MeshError(f"party {j} announced no key, so it cannot be authenticated")
        try:
            self._announced[j] = decode_public_key(key)
            if len(self._announced) < self.config.parties:
                return
            roster = Roster.of([self._announced[i] for i in range(self.config.parties)])
        except RosterError as exc:
            raise MeshError(f"the keys announced in the room are unusable: {exc}") from None
        logger.warning("WARNING: trusting the keys relayed by the room server "
                       "(--trust-room-server): whoever runs it could pose as any party; "
                       "compare the check code that follows with every other party.")
        self.roster.set_result(roster)

    def received(self, j: int, message: CheckCodeMessage, present: list[int]) -> bool:
        """A check-code message from party j; True once the check code is out."""
        try:
            self._check.received(j, message)
        except CheckCodeError as exc:
            raise MeshError(str(exc)) from None
        return self.reveal_when_ready(present)

    def reveal_when_ready(self, present: list[int]) -> bool:
        """Reveal our nonce once every commitment is in and our roster is fixed; True once the
        check code is out."""
        if self._check.ready and self.roster.done():
            message = self._check.reveal()
            for j in sorted(present):
                self._send(j, message)
        if self._check.complete and self.roster.done() and not self.shown:
            self.shown = True
            code = self._check.code(self.roster.result().session_id)
            level = logging.WARNING if self.config.roster is None else logging.INFO
            logger.log(level, "party %d: check code of this run: %s (compare it with every other "
                       "party by voice, not through the room server: equal codes mean that all "
                       "hold the same keys)", self.config.pid, code)
        return self.shown

    def explained(self, failure: str) -> str:
        """A failure while another roster uses our room's name is most likely that mistake."""
        if not self.other_roster_seen:
            return failure
        return (f"{failure}; parties with another roster use room {self.config.room!r}: check "
                "that every party has the same roster file")

    def other_roster(self, missing: list[int]) -> None:
        """Parties of another roster use our room's name: they and we never meet, so a party
        of ours that runs with another roster file would be waited for in vain. We still wait
        (a stranger must not end our run), bounded by the join timeout, and say why."""
        if self.other_roster_seen:
            return
        self.other_roster_seen = True
        cfg = self.config
        if cfg.roster is None:
            ours = "we run without a roster (--trust-room-server)"
        else:
            ours = f"ours has session id {cfg.roster.session_id.hex()[:16]}..."
        waiting = (f"; waiting for parties {missing} of our roster up to the join timeout "
                   f"({cfg.join_timeout:g} s)") if missing else ""
        logger.warning("party %d: room %r is also used by parties with another roster (or "
                       "with none), now or a moment ago; they cannot meet ours. If one of them "
                       "is meant to be one of our parties, it runs with another roster file: "
                       "every party needs the same roster file (%s)%s", cfg.pid, cfg.room,
                       ours, waiting)
