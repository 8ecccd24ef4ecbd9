"""Connect this party to every other party of a room, keep the connections up, and take them
down again: a pure state machine (state.py, fed events.py's events) run by one asyncio driver
(driver.py) over peer connections (peers.py)."""

from .driver import Mesh, progress_logger
from .events import Link
from .interfaces import MeshConfig, MeshError, MeshObserver, PeerConnection, Signaling

__all__ = ["Link", "Mesh", "MeshConfig", "MeshError", "MeshObserver", "PeerConnection",
           "Signaling", "progress_logger"]
