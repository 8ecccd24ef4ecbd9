"""The package's layout holds: the shared core imports neither platform (native/, browser/)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mpc_net"
# Shared by native and browser parties; runtime.py's Pyodide part (BrowserRun) is pure asyncio.
# The room server (all of signaling/) is neither platform either: it serves both.
CORE = ["mesh", "signaling", "ed25519.py", "transport.py", "stream.py", "gate.py",
        "handshake.py", "auth.py",
        "records.py", "liveness.py", "runtime.py", "checkcode.py", "sdp.py", "text.py",
        "rtc/events.py"]
PLATFORMS = ("mpc_net.native", "mpc_net.browser")


def _modules(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def imported(path: Path) -> set[str]:
    """Every module `path` imports, by absolute name, at any depth of its code."""
    package = ["mpc_net", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_the_shared_core_imports_no_platform() -> None:
    offending = [f"{path.relative_to(PACKAGE)} imports {name}"
                 for entry in CORE for path in _modules(entry)
                 for name in sorted(imported(path))
                 if name.startswith(PLATFORMS)]
    assert not offending, "\n".join(offending)


def test_the_check_sees_relative_imports() -> None:
    """It would find the imports it is there to find (or it could never fail)."""
    assert "mpc_net.native.peer" in imported(PACKAGE / "native" / "party.py")
    assert "mpc_net.browser.peer.BrowserPeerConnection" in imported(
        PACKAGE / "browser" / "party.py")
    assert "mpc_net.signaling.protocol" in imported(PACKAGE / "mesh" / "driver.py")


def test_native_and_browser_hold_the_same_roles() -> None:
    roles = {"peer.py", "signaling.py", "identity.py", "party.py"}
    for platform in ("native", "browser"):
        assert roles <= {p.name for p in (PACKAGE / platform).glob("*.py")}, platform
