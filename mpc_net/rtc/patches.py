"""Every change mpc-net makes to aiortc and aioice, and the switch that turns off the SCTP ones.

Three kinds of change, on aiortc 1.16 / aioice 0.13 (pinned; tests/test_aiortc_canary.py
names each private member relied on and fails when a release changes one):

- while aiortc and websockets are imported: what they import that data channels never use loads
  when first used, or not at all (`lean.lean_imports`).

- process-wide, for every connection: aioice's host candidates (which addresses, and 127.0.0.1
  when nothing else exists) and its UDP receive buffers. Applied once, by `apply_process_patches`.
- per association: delayed and piggybacked SACKs, cheaper reassembly (`acks.py`), the
  congestion window and loss recovery (`recovery.py`), eager sends (`sctp.py`), received
  datagrams handled as they arrive (`receive.py`) and packets sent to the socket in one step
  (`send.py`), installed by `tune_association`.
  MPC_NET_STOCK_SCTP=1 leaves them out, so that aiortc's SCTP runs as shipped: to tell an
  aiortc regression from one of ours, or to run an aiortc release whose internals moved.

This module imports neither aiortc nor aioice itself, so that the command line can check the
switch before a party pays for importing them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiortc import RTCSctpTransport

STOCK_SCTP_VARIABLE = "MPC_NET_STOCK_SCTP"

# Measured on aiortc 1.16: aiortc acknowledges every packet, and bursts overflow aioice's
# 256 KiB receive buffer; the drops end in consent expiry. 4 MiB removed the drops.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024

_chosen_host_addresses: list[str] | None = None
_applied = False


def stock_sctp() -> bool:
    """Whether MPC_NET_STOCK_SCTP asks for aiortc's SCTP as shipped (ValueError: not 0 or 1)."""
    value = os.environ.get(STOCK_SCTP_VARIABLE, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{STOCK_SCTP_VARIABLE} must be 1 (aiortc's SCTP as shipped) or 0 "
                         f"(mpc-net's changes), not {value!r}")
    return value == "1"


def check_stock_sctp(error: Callable[[str], object]) -> None:
    """Report a malformed MPC_NET_STOCK_SCTP through `error` (the command line's usage error)."""
    try:
        stock_sctp()
    except ValueError as exc:
        error(str(exc))


def tune_association(association: RTCSctpTransport) -> None:
    """Install mpc-net's SCTP changes on a new association, unless the switch is off."""
    if stock_sctp():
        return
    from .receive import DatagramReceiver
    from .sctp import PiggybackSctpTransport
    from .send import DatagramSender

    PiggybackSctpTransport.adopt(association)
    DatagramReceiver(association.transport, association)
    DatagramSender(association.transport, association)


def use_host_addresses(addresses: list[str] | None) -> None:
    """Offer host candidates on exactly these local addresses (None: aioice's choice).

    aioice leaves 127.0.0.1 out of its host candidates, so a machine whose only interface is
    `lo` would offer none at all; then 127.0.0.1 is used.
    """
    global _chosen_host_addresses
    apply_process_patches()
    _chosen_host_addresses = list(addresses) if addresses is not None else None


def apply_process_patches() -> None:
    """Patch aioice for every connection of this process (once; later calls do nothing)."""
    global _applied
    if _applied:
        return
    import aioice.ice
    import aioice.turn

    aioice_host_addresses = aioice.ice.get_host_addresses

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if _chosen_host_addresses is None:
            return aioice_host_addresses(use_ipv4, use_ipv6) or ["127.0.0.1"]
        wanted = {4: use_ipv4, 6: use_ipv6}
        return [a for a in _chosen_host_addresses if wanted[ipaddress.ip_address(a).version]]

    aioice.ice.get_host_addresses = host_addresses
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = RECEIVE_BUFFER_BYTES
    _applied = True
