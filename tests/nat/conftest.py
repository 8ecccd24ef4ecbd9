"""Fixtures of the NAT tests: one sandbox per test run, one fresh network per test."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from .network import AUCTION, Network
from .topology import ENVIRONMENT, Sandbox, SandboxError
from helpers import ROOT, make_credentials, program_lines

# Namespace names are unique per test run (and per network within it), although they live only
# in the sandbox's private /run and so never meet another run's anyway.
RUN = f"mn{os.getpid()}"
_networks = itertools.count()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _machine_namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          env=ENVIRONMENT)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def sandbox():
    try:
        box = Sandbox.start()
    except SandboxError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield box
        left = box.namespaces()
    finally:
        box.close()
    assert not left, f"namespaces left in the sandbox: {left}"
    ours = [name for name in _machine_namespaces() if name.startswith(RUN)]
    assert not ours, f"namespaces of this run in the machine's `ip netns list`: {ours}"


@pytest.fixture
def network(sandbox, tmp_path, request):
    """network(kind, kind, ...) builds a fresh topology with one party per kind; everything in
    it is stopped and deleted after the test, and its logs are printed if the test failed."""
    built: list[Network] = []

    def build(*kinds: str) -> Network:
        net = Network(sandbox, f"{RUN}-{next(_networks)}", list(kinds),
                      tmp_path / f"network{len(built)}")
        built.append(net)
        return net

    yield build
    report = getattr(request.node, "report_call", None)
    errors = []
    for net in built:
        if report is None or report.failed:
            print(net.report())
        try:
            net.close()
        except Exception as exc:  # noqa: BLE001 - close the others too, then fail
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def credentials(tmp_path_factory) -> list[list[str]]:
    """Keys and a roster for three parties, made with `mpc-net keygen` and `mpc-net roster`."""
    return make_credentials(tmp_path_factory.mktemp("keys"), 3)


@pytest.fixture(scope="session")
def auction_output(sandbox) -> list[str]:
    """What demos/auction.py prints in a 3-party MPyC run over TCP. It runs in the sandbox's
    own network namespace, where no other MPyC run on this machine can take its ports."""
    done = sandbox.run(sys.executable, str(AUCTION), "-M3", cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = program_lines(done.stdout)
    assert "Winner: party 1" in lines and "Price (second-highest bid): 50" in lines, lines
    return lines
