"""The entry points the web app's JavaScript calls; the page itself is only glue.

`prepare` loads this browser's identity key; `join` checks the form, runs the chosen program (a
demo, one the server offers, or the person's own) as one party of the room and tells the page,
in words, how it went. The page passes a `ui`
object whose methods (status, program, peer, progress, output, log, warning, error) show
things.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import random
import re
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyodide.ffi import JsException, JsProxy, can_run_sync

from ..argtypes import bounds_error
from ..auth import (
    Roster,
    RosterError,
    decode_public_key,
    encode_public_key,
    short_hash,
    split_roster_entry,
)
from ..config import key_holder_problem, program_file_hash, signal_url_problem
from ..ice import IceConfigError, is_loopback_host, parse_urls
from ..mesh import MeshConfig, MeshError
from ..runtime import BrowserRun, MpycOptionError, SyncStyleError
from ..signaling.protocol import ProtocolError, validate_room
from .demos import DEMOS_PACKAGE, Demo, InputError, find
from .identity import WebCryptoIdentity, verify
from .jsffi import js_object
from .party import run_program

_identity: WebCryptoIdentity | None = None

# Where the page keeps a program it runs that is not a demo: a file, as natively, so that MPyC
# and argparse see its name and the handshake hashes the same text.
PROGRAMS = Path("/tmp/mpc-net-programs")
# Packages a program may want that a page does not load, so that it says so, not "not found".
NOT_IN_PAGES = frozenset({"numpy", "gmpy2", "scipy"})


class FormError(ValueError):
    """The form cannot start a run; the text says what to fix."""


@dataclass(frozen=True)
class Program:
    """What a party runs: a file, its name as people see it, and what the run takes."""

    name: str  # the file name: sys.argv[0] and the name by the hash
    path: str
    args: list[str]  # public arguments, then a demo's own from its input
    stdin: str  # this party's private input, which the program reads from standard input
    sync_demo: bool = False  # a demo known to call mpc.run() at module level


class _Ui:
    """The page's ui, remembering the last line of the program's log (its standard error),
    which says why a program stopped with an exit code (argparse's usage error, say)."""

    def __init__(self, ui: Any) -> None:
        self._ui = ui
        self.last_line = ""

    def log(self, line: str) -> None:
        if line.strip():
            self.last_line = line.strip()
        self._ui.log(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ui, name)


def reseed() -> None:
    """After the page started from the bundle's memory snapshot, which every page of the bundle
    shares: seed `random` anew, or all pages would draw the same numbers (the room's retry
    jitter, say). Secrets never come from `random`; `secrets` asks the browser each time."""
    random.seed()


async def prepare(key_slot: str) -> JsProxy:
    """Load (or make, on first use) this browser's identity key stored under `key_slot`."""
    global _identity
    try:
        _identity = await WebCryptoIdentity.load_or_create(key_slot)
    except JsException as exc:
        raise RuntimeError(f"this browser cannot keep an Ed25519 key in WebCrypto ({exc.name}: "
                           f"{exc.message}); use a current Chrome, Edge, Firefox or Safari"
                           ) from None
    return js_object({"publicKey": _identity.public_text, "new": _identity.new,
                      "python": sys.version.split()[0]})


def make_roster(text: str) -> JsProxy:
    """A roster from the parties' public keys as people paste them, one party per line in
    party order (`KEY` or `NAME=KEY`, as `mpc-net roster` takes them): {ok, roster, text}."""
    items = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        if len(items) < 2:
            raise RosterError("paste the public keys of at least two parties, one per line, "
                              "in party order")
        entries = [split_roster_entry(item) for item in items]
        roster = Roster.of([decode_public_key(key) for _, key in entries],
                           [name for name, _ in entries])
    except RosterError as exc:
        return js_object({"ok": False, "text": f"Keys: {exc}"})
    return js_object({"ok": True, "roster": roster.to_json(), "parties": len(roster),
                      "text": f"A roster of {len(roster)} parties: send each party its link "
                              "below."})


def new_key_notice(roster_text: str) -> str:
    """What a page that has just made its key says when its link's roster lists other keys
    ("" when the roster holds it, or is unusable, which the form reports on its own)."""
    try:
        roster = Roster.from_json(roster_text)
    except RosterError:
        return ""
    if _identity is None or roster.index_of(_identity.public_key) is not None:
        return ""
    return ("This browser had no identity key for this page, so it made a new one, which is "
            "not in the roster of this link: this is another browser or profile, or its site "
            "data was cleared and the old key is gone for good. Send your new public key "
            "(above) to the organizer, who makes a new roster and new links for every party.")


def describe_roster(text: str) -> JsProxy:
    """What the page says about a roster: its parties and whose key is ours, or what is
    wrong."""
    try:
        roster = Roster.from_json(text)
    except RosterError as exc:
        return js_object({"ok": False, "text": f"Roster: {exc}"})
    names = ", ".join(roster.label(i) for i in range(len(roster)))
    holder = None if _identity is None else roster.index_of(_identity.public_key)
    mine = "" if _identity is None else (
        "; your key is not in it" if holder is None else f"; your key is party {holder}'s")
    # A code of the roster alone would fall to a birthday search by whoever adds a key last;
    # the run's check code (commit, then reveal) holds.
    return js_object({"ok": True, "text": f"{len(roster)} parties ({names}){mine}. Once "
                                          "connected, compare the run's check code with the "
                                          "others."})


async def join(form: JsProxy, ui: Any) -> JsProxy:
    """Run the form's program as its party of its room; returns {ok, error, seconds}."""
    started = time.monotonic()
    run = BrowserRun()
    ui = _Ui(ui)
    program = None
    joined = False
    try:
        program, config = _configure(form.to_py(), ui)
        # Whoever compares programs by hand (`sha256sum demos/NAME.py`) needs to see ours.
        ui.program(program.name, short_hash(config.program_hash), config.program_hash.hex())
        ui.status("joining", f"Joining room {config.room} as party {config.pid} of "
                             f"{config.parties}.")
        joined = True
        await run_program(program.path, program.args, config, ui, run, program.stdin)
        error = run.error and str(run.error)
    except SystemExit as exc:
        error = _exit_error(exc, ui.last_line)
    except (FormError, MeshError, SyncStyleError, MpycOptionError) as exc:
        error = str(run.error or exc)
    except asyncio.CancelledError:
        if run.error is None:
            raise
        error = str(run.error)  # a lost party cancels what mpc.run waits for
    except ModuleNotFoundError as exc:
        error = str(run.error) if run.error else _missing_module(exc)
    except Exception as exc:
        if run.error is None:
            ui.log("".join(traceback.format_exception(exc)))  # for the program's author
        error = str(run.error) if run.error else _program_error(exc, program)
    seconds = round(time.monotonic() - started, 2)
    if error:
        ui.status("failed", "The run stopped." if joined else "The run did not start.")
        ui.error(error)
    else:
        ui.status("done", f"Done in {seconds} s.")
    return js_object({"ok": not error, "error": error, "seconds": seconds})


def _exit_error(exc: SystemExit, last_line: str) -> str | None:
    """What a program that called sys.exit (or whose argparse did) tells the page."""
    if exc.code in (None, 0):
        return None
    if isinstance(exc.code, str):
        return f"the program stopped: {exc.code}"
    said = f": {last_line}" if last_line else ""
    return f"the program stopped with exit code {exc.code}{said}"


def _missing_module(exc: ModuleNotFoundError) -> str:
    name = exc.name or "a module"
    top = name.partition(".")[0]
    if top in NOT_IN_PAGES:
        return (f"the program imports {name}, which this page does not have (it runs MPyC on "
                f"Python's standard library): run the program natively (`mpc-net run`), or "
                f"without {top}")
    return (f"the program imports {name}, which is not here: a program in this page is one "
            f"file, with MPyC and Python's standard library; put what it needs of {top} into "
            "the program itself")


def _program_error(exc: Exception, program: Program | None) -> str:
    """An exception of the program, in one line with where in the program it was raised."""
    said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if program is None:
        return said
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if frame.filename == program.path]
    where = f" (line {lines[-1]} of {program.name})" if lines else ""
    return f"the program raised {said}{where}"


def _configure(form: dict, ui: Any) -> tuple[Program, MeshConfig]:
    if _identity is None:
        raise FormError("the identity key is not loaded yet")
    try:
        room = validate_room(form.get("room", "").strip())
        parties = _number(form, "parties", "number of parties", 2)
        pid = _number(form, "party", "party index", 0)
        if pid >= parties:
            raise FormError(f"the party index must be below the number of parties, {parties}")
        roster = _roster(form, parties)
        ice_servers = parse_urls(form.get("ice", "").split())
        outage_limit = _seconds(form, "outage-limit", "outage limit")
        program = _program(form, pid)
    except (InputError, RosterError, IceConfigError) as exc:
        raise FormError(str(exc)) from None
    except ProtocolError as exc:
        raise FormError(exc.message) from None
    if program.sync_demo and not can_run_sync():
        raise SyncStyleError(f"{program.name} calls mpc.run() at module level, which needs a "
                             "browser with JavaScript Promise integration (Chrome or Edge 137 "
                             "or later)")
    signal = form.get("signal", "")
    problem = signal_url_problem(signal)
    if problem is not None:
        raise FormError(f"the room server {problem}")
    where = None if roster is None else key_holder_problem(roster, _identity.public_key, pid)
    if where is not None:
        # Joining anyway lets every party see the refusal, instead of waiting for us.
        ui.warning(f"Your key {encode_public_key(_identity.public_key)} {where}, not party "
                   f"{pid}'s: the other parties will refuse this browser.")
    # As natively: with the room server on loopback, so are the parties.
    loopback = ["127.0.0.1"] if is_loopback_host(urlsplit(signal).hostname) else None
    config = MeshConfig(signaling_url=signal, room=room, pid=pid, parties=parties,
                        identity=_identity, verify=verify, roster=roster,
                        ice_servers=ice_servers, relay_only=_checked(form, "relay-only"),
                        outage_limit=outage_limit, program_hash=program_file_hash(program.path),
                        allow_different_programs=_checked(form, "allow_different_programs"),
                        host_addresses=loopback)
    return program, config


def _program(form: dict, pid: int) -> Program:
    """The form's program: a demo (by name), or the text of one the server offers or the
    person's own, with its public arguments and this party's private input."""
    try:
        args = shlex.split(form.get("args", ""))
    except ValueError as exc:
        raise FormError(f"the arguments: {str(exc).lower()} (quote as in a shell)") from None
    text = form.get("program_text")
    if text is None:
        demo = find(form.get("demo", ""))
        return Program(f"{demo.name}.py", _script(demo),
                       [*args, *demo.arguments(form.get("input", ""), pid)], "",
                       demo.style == "sync")
    name = _file_name(form.get("program_name", ""))
    if not text.strip():
        raise FormError("the program is empty: pick a file, or paste or type one")
    try:
        compile(text, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise FormError(f"{name} is not valid Python: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:  # a NUL character, say
        raise FormError(f"{name} is not valid Python: {exc}") from None
    PROGRAMS.mkdir(parents=True, exist_ok=True)
    path = PROGRAMS / name
    path.write_text(text, encoding="utf-8", newline="")
    return Program(name, str(path), args, form.get("private-input", ""))


def _file_name(name: str) -> str:
    """A program's name as a plain file name: what a picked file, a link or the server says,
    else program.py."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rpartition("/")[2])
    name = name.lstrip(".")
    if not name:
        return "program.py"
    return name if name.endswith(".py") else f"{name}.py"


def _roster(form: dict, parties: int) -> Roster | None:
    """The roster of the form; None when the party trusts the keys the room server relays
    (as `mpc-net run --trust-room-server`), which the run's check code then guards."""
    text = form.get("roster", "").strip()
    if _checked(form, "trust-room-server"):
        if text:
            raise FormError("a roster and trusting the room server exclude each other: clear "
                            "the roster, or untick trusting the room server")
        return None
    roster = Roster.from_json(text)
    if len(roster) != parties:
        raise FormError(f"the roster lists {len(roster)} parties, not {parties}")
    return roster


def _checked(form: dict, name: str) -> bool:
    """A ticked checkbox, or a link's NAME=1."""
    return str(form.get(name, "")).strip().lower() in ("on", "1", "true", "yes")


def _seconds(form: dict, name: str, what: str) -> float:
    text = str(form.get(name, "")).strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        raise FormError(f"the {what} must be a number of seconds") from None
    if bounds_error(value, 0) is not None:  # the check of `mpc-net run --outage-limit`
        raise FormError(f"the {what} must be 0 or more seconds")
    return value


def _number(form: dict, name: str, what: str, least: int) -> int:
    try:
        value = int(str(form.get(name, "")).strip())
    except ValueError:
        raise FormError(f"the {what} must be a whole number") from None
    if value < least:
        raise FormError(f"the {what} must be at least {least}")
    return value


def _script(demo: Demo) -> str:
    return str(importlib.resources.files(DEMOS_PACKAGE) / f"{demo.name}.py")

