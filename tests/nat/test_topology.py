"""The test network is what the NAT tests say it is.

Each NAT kind maps and filters as named, coturn serves STUN and TURN over UDP and TCP to the
credentials it should accept and to no others, and parties with public addresses run a demo
through it. If one of these fails, the NAT tests' results say nothing about mpc-net.
"""

from __future__ import annotations

import json
import re
import sys
import time

import pytest

from .network import AUCTION, TOOLS, TURN_PASSWORD, TURN_USER, describe, rest_credentials
from .topology import SERVER, TURN_PORT, wait_for
from helpers import program_lines

pytestmark = pytest.mark.timeout(120)


def probe_udp(net, index: int) -> list[list[str]]:
    """What party `index` got back from the UDP echo on ports 7000 and 7001 (one socket)."""
    done = net.run_in_party(index, sys.executable, str(TOOLS), "udp-probe", SERVER, "7000",
                            "7001")
    assert done.returncode == 0, done.stderr
    return [entry["answers"] for entry in json.loads(done.stdout)]


def allocate(net, index: int, username: str, password: str, transport: str) -> dict:
    """A TURN allocation from party `index`'s namespace, made with aioice as parties do."""
    done = net.run_in_party(index, sys.executable, str(TOOLS), "turn-allocate", SERVER,
                            str(TURN_PORT), username, password, transport)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_nat_kinds_map_and_filter_as_named(network) -> None:
    net = network("cone", "symmetric", "udp-blocked", "public")
    net.spawn("udp-echo", [sys.executable, str(TOOLS), "udp-echo", SERVER, "7000", "7001"],
              net.topology.inet)
    wait_for(lambda: "ready" in net.logs["udp-echo stdout"].read_text(), "the UDP echo")
    cone, symmetric, blocked, public = (probe_udp(net, i) for i in range(4))

    # Cone: one mapping for both destinations (endpoint-independent), on the router's address;
    # the answer sent from port 7001 to the mapping made for port 7000 was dropped.
    assert len(cone[0]) == 1 and cone[0] == cone[1], cone
    assert cone[0][0].startswith(f"{net.sites[0].public}:"), cone
    # Symmetric: a new mapping per destination, and the same filtering.
    assert len(symmetric[0]) == 1 and len(symmetric[1]) == 1, symmetric
    assert symmetric[0][0].startswith(f"{net.sites[1].public}:"), symmetric
    assert symmetric[0] != symmetric[1], symmetric
    # UDP blocked: nothing comes back.
    assert blocked == [[], []]
    # Public: the party's own address, and no filtering at all.
    assert public[0][0].startswith(f"{net.sites[3].address}:"), public
    assert public[0][1] == f"from-other-port {public[0][0]}", public


def test_no_device_gets_an_ipv6_address_that_turns_valid_later(network) -> None:
    """A link-local address turning valid a second after a link is up is a network change to
    Chromium, which then fails the requests in flight; so none is made."""
    net = network("cone", "public")
    # A link-local address shows from the moment its link is up, as tentative until it turns
    # valid: no waiting needed to see one.
    for ns in net.topology.namespaces:
        shown = net.sandbox.run("ip", "-6", "-o", "address", "show", ns=ns, check=False)
        assert shown.returncode == 0, shown.stderr
        addresses = [line for line in shown.stdout.splitlines() if " lo " not in line]
        assert addresses == [], f"{ns}: {addresses}"


def test_coturn_serves_turn_over_udp_and_tcp_to_its_user_only(network) -> None:
    net = network("symmetric", "udp-blocked")
    net.start_coturn()
    for transport in ("udp", "tcp"):
        relay = allocate(net, 0, TURN_USER, TURN_PASSWORD, transport)
        assert relay.get("relayed", [None])[0] == SERVER, relay
        assert relay["mapped"][0] == net.sites[0].public, relay
    # Behind the UDP-blocking router only TCP reaches coturn.
    assert allocate(net, 1, TURN_USER, TURN_PASSWORD, "tcp")["relayed"][0] == SERVER
    assert "TimeoutError" in allocate(net, 1, TURN_USER, TURN_PASSWORD, "udp")["error"]
    # A wrong password is refused.
    for transport in ("udp", "tcp"):
        refused = allocate(net, 0, TURN_USER, "wrong", transport)
        assert "401" in refused.get("error", ""), refused


def test_coturn_accepts_fresh_rest_credentials_of_its_secret_only(network) -> None:
    net = network("symmetric")
    net.start_coturn(secret="the-secret")
    now = int(time.time())
    fresh = allocate(net, 0, *rest_credentials("the-secret", now + 600), "udp")
    assert fresh.get("relayed", [None])[0] == SERVER, fresh
    expired = allocate(net, 0, *rest_credentials("the-secret", now - 5), "udp")
    assert "401" in expired.get("error", ""), expired
    other_secret = allocate(net, 0, *rest_credentials("another-secret", now + 600), "udp")
    assert "401" in other_secret.get("error", ""), other_secret
    # The refusals are coturn's verdict on the credentials, in its log.
    log = net.logs["coturn log"].read_text()
    assert re.search(rf"user <{now - 5}:probe>.*error 401", log), log[-2000:]


def test_parties_with_public_addresses_run_the_demo(network, credentials,
                                                    auction_output) -> None:
    """No NAT anywhere: the room server and the parties talk across the test internet."""
    net = network("public", "public", "public")
    net.start_room_server()
    runs = net.run_parties(AUCTION, "public", credentials)
    for run in runs:
        assert run.returncode == 0, describe(runs)
        assert program_lines(run.stdout) == auction_output, describe(runs)
