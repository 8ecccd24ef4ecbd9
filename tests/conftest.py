import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(params=["tuned", "stock"])
def sctp(request, monkeypatch) -> str:
    """Both ways: with mpc-net's SCTP changes, and with aiortc's SCTP as shipped (the switch)."""
    monkeypatch.setenv("MPC_NET_STOCK_SCTP", "1" if request.param == "stock" else "0")
    return request.param


@pytest.fixture
def redis_server():
    """A redis-server on a loopback port of its own (tests/sharedrooms.py), stopped after."""
    from sharedrooms import redis_server_here

    server = redis_server_here()
    yield server
    server.stop()
