"""mpc-net across NATs: a real 3-party MPyC demo between parties behind NAT routers (issue 4).

Each test builds its own network (topology.py): a test internet with coturn and the room
server, and per party a router of the named NAT kind with the party behind it. The parties run
`mpc-net run demos/auction.py -M3 -I i ...` in their namespaces; the tests check the program's
output against MPyC over TCP, and the candidate pair types each party reports for each peer
("mpc-net: party 0 -> party 1: path host -> srflx, ...").

What the NAT kinds allow (checked by test_topology.py, and by feas_nat.md's measurements):
- cone x cone: the parties punch through with their server-reflexive candidates (no relay);
- symmetric x anything that filters (all our NATs do): only a TURN relay gets through;
- UDP blocked: only TURN over TCP gets out.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from .network import AUCTION, STUN_URL, PartyRun, describe, rest_credentials, turn_url
from .topology import SERVER, TURN_PORT
from helpers import program_lines

pytestmark = pytest.mark.timeout(150)

# A run with no possible path fails within --connect-timeout (default 20 s) once all parties are
# in the room. Parties are timed from the start of the last one, which includes starting Python,
# importing MPyC and aiortc, and joining: a few seconds on a loaded 2-core machine.
CONNECT_TIMEOUT = 20
STARTUP_ALLOWANCE = 7

STUN = ["--ice", STUN_URL]
TURN_UDP = ["--ice", STUN_URL, "--ice", turn_url("udp")]
TURN_TCP = ["--ice", STUN_URL, "--ice", turn_url("tcp")]
ROOM_TURN_URL = f"turn:{SERVER}:{TURN_PORT}?transport=udp"


def assert_demo_ran(runs: list[PartyRun], expected: list[str]) -> None:
    """Every party finished, printed what MPyC over TCP prints, and reported a path to each
    other party."""
    for run in runs:
        assert run.returncode == 0, f"party {run.index} failed\n{describe(runs)}"
        assert program_lines(run.stdout) == expected, f"party {run.index}\n{describe(runs)}"
        missing = sorted({other.index for other in runs} - {run.index} - set(run.paths))
        assert not missing, f"party {run.index} reported no path (LOCAL -> REMOTE) to " \
                            f"parties {missing}\n{describe(runs)}"
    print("\n".join(f"party {run.index} -> party {peer}: {local} -> {remote}"
                    for run in runs for peer, (local, remote) in sorted(run.paths.items())))


def assert_no_path(runs: list[PartyRun], parties: list[int] | None = None) -> None:
    """The parties (default: all) failed, in bounded time, naming an unreachable peer and
    saying that a TURN server would help; and said nothing else alarming."""
    failed = [run for run in runs if parties is None or run.index in parties]
    for run in failed:
        assert run.returncode == 1, f"party {run.index}\n{describe(runs)}"
        print(f"party {run.index} gave up after {run.seconds:.1f} s")
        assert run.seconds < CONNECT_TIMEOUT + STARTUP_ALLOWANCE, \
            f"party {run.index} took {run.seconds:.1f} s to give up\n{describe(runs)}"
        peers = {int(j) for j in re.findall(r"could not connect to party (\d+)", run.stderr)}
        assert peers and run.index not in peers and peers <= {r.index for r in runs}, \
            f"party {run.index} does not name the party it could not reach\n{describe(runs)}"
        assert "TURN" in run.stderr, f"party {run.index} does not mention TURN\n{describe(runs)}"
    for run in failed:
        assert_quiet(run)


def assert_quiet(run: PartyRun) -> None:
    """A failure is reported in mpc-net's own words only: no traceback, and no exception that
    asyncio found unhandled (it logs those through MPyC's logger, to stdout)."""
    output = f"party {run.index}:\n--- stdout\n{run.stdout}--- stderr\n{run.stderr}"
    for text in (run.stdout, run.stderr):
        assert "Traceback" not in text, output
        assert "exception was never retrieved" not in text, output


def test_cone_nats_connect_directly_with_stun_only(network, credentials, auction_output):
    net = network("cone", "cone", "cone")
    net.start_coturn()  # serves STUN; no TURN URL is given to anyone
    net.start_room_server()
    runs = net.run_parties(AUCTION, "cone-stun", credentials, STUN)
    assert_demo_ran(runs, auction_output)
    for run in runs:
        for peer, pair in run.paths.items():
            assert "relay" not in pair, f"party {run.index} -> {peer}: {pair}"
            # Each party sits behind its own NAT: a peer's host address is unreachable.
            assert pair[1] != "host", f"party {run.index} -> {peer}: {pair}"


def test_symmetric_nats_connect_through_turn(network, credentials, auction_output):
    net = network("symmetric", "symmetric", "symmetric")
    net.start_coturn()
    net.start_room_server()
    runs = net.run_parties(AUCTION, "symmetric-turn", credentials, TURN_UDP)
    assert_demo_ran(runs, auction_output)
    for run in runs:
        for peer, pair in run.paths.items():
            assert "relay" in pair, f"party {run.index} -> {peer}: {pair}"


def test_mixed_mesh_of_symmetric_and_cone_nats(network, credentials, auction_output):
    net = network("cone", "symmetric", "cone")
    net.start_coturn()
    net.start_room_server()
    runs = net.run_parties(AUCTION, "mixed", credentials, TURN_UDP)
    assert_demo_ran(runs, auction_output)
    # Party 1 is behind the symmetric NAT: only a relay reaches it. (Parties 0 and 2 may punch
    # through or, as aioice nominates the first pair that works, use the relay too.)
    for i, j in ((0, 1), (1, 0), (1, 2), (2, 1)):
        assert "relay" in runs[i].paths[j], f"party {i} -> {j}: {runs[i].paths[j]}"


def test_udp_blocked_router_connects_over_turn_tcp(network, credentials, auction_output):
    net = network("cone", "udp-blocked", "cone")
    net.start_coturn()
    net.start_room_server()
    # Everyone has the same configuration; party 1 cannot reach the STUN server (UDP), which
    # costs it aioice's 5 s gathering timeout, and gets out only through TURN over TCP.
    runs = net.run_parties(AUCTION, "udp-blocked", credentials, TURN_TCP)
    assert_demo_ran(runs, auction_output)
    for peer, (local, _) in runs[1].paths.items():
        assert local == "relay", f"party 1 -> {peer}: {runs[1].paths[peer]}"
    for i in (0, 2):
        assert "relay" in runs[i].paths[1], f"party {i} -> 1: {runs[i].paths[1]}"


def test_symmetric_nats_without_turn_fail_within_20_s(network, credentials):
    """Party 2 starts 1.5 s after the others, as parties do: parties 0 and 1 give up on each
    other (and leave the room) shortly before party 2's attempts time out. Party 2 must still
    fail within 20 s of joining, saying what it tried, not wait for them to come back."""
    net = network("symmetric", "symmetric", "symmetric")
    net.start_coturn()  # STUN only for the parties
    net.start_room_server()
    runs = net.run_parties(AUCTION, "symmetric-stun", credentials, STUN, start_delays={2: 1.5})
    assert_no_path(runs)


def test_relay_only_offers_and_uses_relay_candidates_only(network, credentials,
                                                          auction_output):
    net = network("cone", "cone", "cone")
    net.start_coturn()
    net.start_room_server(wiretap=True)  # records every message between parties and server
    runs = net.run_parties(AUCTION, "relay-only", credentials, [*TURN_UDP, "--relay-only", "-v"])
    assert_demo_ran(runs, auction_output)
    for run in runs:
        for peer, (local, remote) in run.paths.items():
            assert local == "relay" and remote in ("relay", "prflx"), \
                f"party {run.index} -> {peer}: {local} -> {remote}"
        # What each party says it sent: an offer to every higher index, an answer to every
        # lower one, each with relay candidates only.
        sent = {(kind, peer) for kind, peer, _ in run.descriptions}
        expected = {("offer" if peer > run.index else "answer", peer)
                    for peer in range(len(runs)) if peer != run.index}
        assert expected <= sent, f"party {run.index} sent {sorted(sent)}\n{describe(runs)}"
        for kind, peer, types in run.descriptions:
            assert types and set(types) == {"relay"}, \
                f"party {run.index}: {kind} to party {peer} had candidates {types}"
    # What actually went through the room server: every candidate in every SDP is a relay
    # candidate, and no party's own or NAT address appears anywhere.
    messages = net.tapped_messages()
    candidates = [re.findall(r"candidate:\S+ \d+ \w+ \d+ (\S+) (\d+) typ (\w+)", m)
                  for m in messages]
    found = [c for per_message in candidates for c in per_message]
    assert len(found) >= 6, f"expected candidates in 6 SDPs, saw {found}"
    assert {typ for _, _, typ in found} == {"relay"}, found
    assert {host for host, _, _ in found} == {SERVER}, found
    for site in net.sites:
        for address in {site.address, site.public}:
            leaks = [m for m in messages if re.search(rf"(?<![\d.]){re.escape(address)}(?!\d)",
                                                      m)]
            assert not leaks, f"party {site.index}'s address {address} was sent: {leaks[:1]}"


def _issued_credentials(messages: list[str]) -> list[tuple[str, str]]:
    """(username, password) pairs in the room server's messages: TURN REST usernames are
    "<expiry>:<name>"; the password is any other string in the same message."""
    found = []
    for message in messages:
        try:
            strings = list(_strings(json.loads(message)))
        except ValueError:
            continue
        for username in strings:
            if re.fullmatch(r"\d{9,}:\S*", username):
                found += [(username, other) for other in strings if other != username]
    return found


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_turn_credentials_from_the_room_server(network, credentials, auction_output):
    net = network("symmetric", "symmetric", "symmetric")
    net.start_coturn(secret="shared-secret")
    # Credentials go to parties that prove their seat and hold a join token.
    net.start_room_server("--turn-url", ROOM_TURN_URL, "--turn-secret", "shared-secret",
                          "--join-token", "members", wiretap=True)
    asked = time.time()
    members = [c + ["--join-token", "members"] for c in credentials]
    runs = net.run_parties(AUCTION, "room-turn", members, STUN)  # no TURN flag of their own
    assert_demo_ran(runs, auction_output)
    for run in runs:
        for peer, pair in run.paths.items():
            assert "relay" in pair, f"party {run.index} -> {peer}: {pair}"
    # The room server handed out TURN REST credentials of the default lifetime (10 minutes);
    # the secret itself never left it.
    messages = net.tapped_messages()
    issued = [(user, password) for user, password in _issued_credentials(messages)
              if rest_credentials("shared-secret", int(user.split(":")[0]),
                                  user.split(":", 1)[1]) == (user, password)]
    assert issued, f"no TURN REST credentials in the room server's messages: {messages[:5]}"
    for user, _ in issued:
        expiry = int(user.split(":")[0])
        assert asked + 600 - 60 <= expiry <= time.time() + 600 + 5, (user, asked)
    assert not any("shared-secret" in m for m in messages)


def test_wrong_turn_credentials_from_the_room_server_fail_clearly(network, credentials):
    net = network("symmetric", "symmetric", "symmetric")
    net.start_coturn(secret="coturn-secret")
    net.start_room_server("--turn-url", ROOM_TURN_URL, "--turn-secret", "another-secret",
                          "--turn-open-relay")
    runs = net.run_parties(AUCTION, "wrong-turn", credentials, STUN)
    assert_no_path(runs)
    assert re.search(r"user <\d+:[^>]*>.*error 401", net.logs["coturn log"].read_text())


def test_turn_credentials_are_renewed_while_a_party_waits(network, credentials, auction_output):
    """The room server hands out credentials that live 1 s. Party 0, behind a router that
    blocks UDP (so only a TURN relay over TCP gets it out), joins first; the others 2.5 s
    later, when the credentials it got at joining have expired. The room server renewed them
    while its seat stayed, so the run goes through the relay. The parties have no --ice of
    their own."""
    net = network("udp-blocked", "symmetric", "symmetric")
    net.start_coturn(secret="shared-secret")
    net.start_room_server("--turn-url", f"turn:{SERVER}:{TURN_PORT}?transport=tcp",
                          "--turn-secret", "shared-secret", "--turn-ttl", "1", "--turn-open-relay")
    runs = net.run_parties(AUCTION, "renewed-turn", credentials, start_delays={1: 2.5, 2: 2.5})
    assert_demo_ran(runs, auction_output)
    for peer, pair in runs[0].paths.items():
        assert "relay" in pair, f"party 0 -> {peer}: {pair}"
