"""The commit-then-reveal exchange behind a run's check code (auth.short_authentication_string),
without I/O: the mesh carries its messages as signals through the room server, which may be the
very party that tries to substitute keys, so every rule that makes the code hold is here.
"""

from __future__ import annotations

import secrets

from .auth import CHECK_NONCE_BYTES, check_commitment, short_authentication_string
from .signaling.protocol import CheckCodeMessage


class CheckCodeError(Exception):
    """A party broke the exchange; the text says how."""


class CheckExchange:
    """One party's side: its nonce, and the others' commitments and nonces by index."""

    def __init__(self, pid: int, parties: int) -> None:
        self.pid = pid
        self.parties = parties
        self._nonce = secrets.token_bytes(CHECK_NONCE_BYTES)
        self._commitments: dict[int, bytes] = {}
        self._nonces: dict[int, bytes] = {pid: self._nonce}
        self.revealed = False

    def commit(self) -> CheckCodeMessage:
        """Our commitment, for every other party (again for one that comes back)."""
        return CheckCodeMessage("commit", check_commitment(self.pid, self._nonce))

    def reveal(self) -> CheckCodeMessage:
        """Our nonce: only once every commitment is in and our roster is fixed (the caller
        knows the roster), so no one can choose what it sends after learning it."""
        if len(self._commitments) < self.parties - 1:
            raise RuntimeError("revealing before every commitment is in")
        self.revealed = True
        return CheckCodeMessage("reveal", self._nonce)

    @property
    def ready(self) -> bool:
        return not self.revealed and len(self._commitments) == self.parties - 1

    @property
    def complete(self) -> bool:
        return len(self._nonces) == self.parties

    def received(self, j: int, message: CheckCodeMessage) -> None:
        """A commitment or a nonce from party j; raise CheckCodeError if it breaks the rules."""
        kind, value = message.step, message.value
        if kind == "commit" and len(value) == len(check_commitment(0, b"")):
            earlier = self._commitments.get(j)
            if earlier is not None and earlier != value and (self.revealed or j in self._nonces):
                # Choosing anew after our nonce is out would let it aim at a code.
                raise CheckCodeError(f"party {j} changed its check-code commitment after the "
                                     "nonces were revealed (did it restart?)")
            self._commitments[j] = value
        elif kind == "reveal" and len(value) == CHECK_NONCE_BYTES:
            if check_commitment(j, value) != self._commitments.get(j):
                raise CheckCodeError(f"party {j}'s check-code nonce does not match its "
                                     "commitment: the room server or party j changed it")
            self._nonces[j] = value
        else:
            raise CheckCodeError(f"party {j} sent a malformed check-code message")

    def code(self, session_id: bytes) -> str:
        return short_authentication_string(
            session_id, [self._nonces[i] for i in range(self.parties)])
