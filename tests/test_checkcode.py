"""The run's check code: commit, then reveal. Whoever relays the exchange fixes what it
substitutes before the nonces that decide the code are known."""

from __future__ import annotations

import math
import re

import pytest

from mpc_net.auth import CHECK_CODE_DIGITS, check_commitment, short_authentication_string
from mpc_net.checkcode import CheckCodeError, CheckExchange
from mpc_net.signaling.protocol import (
    CheckCodeMessage,
    ProtocolError,
    encode_bytes,
    parse_signal_data,
)

SESSION = bytes(range(32))


def _exchange(parties: int) -> list[CheckExchange]:
    sides = [CheckExchange(i, parties) for i in range(parties)]
    for side in sides:
        for other in sides:
            if other is not side:
                other.received(side.pid, side.commit())
    for side in sides:
        assert side.ready
        message = side.reveal()
        for other in sides:
            if other is not side:
                other.received(side.pid, message)
    assert all(side.complete for side in sides)
    return sides


def test_honest_parties_get_one_code_of_sixteen_digits() -> None:
    sides = _exchange(3)
    codes = {side.code(SESSION) for side in sides}
    assert len(codes) == 1
    [code] = codes
    assert re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{4}", code)
    # Luck of 10**-16 per run: well below the 2**-40 a substitution may have.
    assert CHECK_CODE_DIGITS * math.log2(10) > 53
    # Another roster, or another run, gives another code.
    assert sides[0].code(bytes(32)) != code
    assert _exchange(3)[0].code(SESSION) != code


def test_the_code_covers_the_roster_and_every_nonce() -> None:
    nonces = [bytes([i]) * 32 for i in range(3)]
    code = short_authentication_string(SESSION, nonces)
    for i in range(3):
        changed = nonces[:i] + [bytes([9]) * 32] + nonces[i + 1:]
        assert short_authentication_string(SESSION, changed) != code
    assert short_authentication_string(SESSION[::-1], nonces) != code


def test_nothing_is_revealed_before_every_commitment_is_in() -> None:
    side = CheckExchange(0, 3)
    side.received(1, CheckExchange(1, 3).commit())
    assert not side.ready
    with pytest.raises(RuntimeError):
        side.reveal()


def test_a_nonce_must_match_its_commitment() -> None:
    a, b = CheckExchange(0, 2), CheckExchange(1, 2)
    a.received(1, b.commit())
    b.received(0, a.commit())
    b.reveal()
    # A relay that swaps the nonce, or reveals a party's nonce under another index, is caught.
    other = CheckExchange(1, 2)
    other.received(0, a.commit())
    with pytest.raises(CheckCodeError, match="does not match its commitment"):
        a.received(1, other.reveal())
    with pytest.raises(CheckCodeError, match="does not match"):
        a.received(1, CheckCodeMessage("reveal", bytes(32)))
    a.received(1, b.reveal())
    assert a.complete
    assert check_commitment(0, bytes(32)) != check_commitment(1, bytes(32))


def test_no_new_commitment_once_nonces_are_out() -> None:
    a, b = CheckExchange(0, 2), CheckExchange(1, 2)
    a.received(1, b.commit())
    # Before anything is revealed a party that restarted may commit anew...
    b = CheckExchange(1, 2)
    a.received(1, b.commit())
    b.received(0, a.commit())
    a.reveal()
    # ... but not once our nonce is out: it could then aim at a code.
    with pytest.raises(CheckCodeError, match="changed its check-code commitment"):
        a.received(1, CheckExchange(1, 2).commit())
    a.received(1, b.commit())  # the same again is harmless


@pytest.mark.parametrize("message", [
    {}, {"commit": 1}, {"commit": "x"}, {"reveal": encode_bytes(bytes(31))},
    {"commit": encode_bytes(bytes(32)), "reveal": encode_bytes(bytes(32))}, {"other": "x"}, [1],
])
def test_malformed_messages_are_refused(message: object) -> None:
    """Refused as a signal's payload (ProtocolError), or by the exchange (CheckCodeError)."""
    with pytest.raises((ProtocolError, CheckCodeError), match="malformed"):
        CheckExchange(0, 2).received(1, parse_signal_data({"check": message}))
