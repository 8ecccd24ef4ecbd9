"""The entry points the web app's JavaScript calls; the page itself is only glue.

`prepare` loads this browser's identity key; `join` checks the form, runs the chosen demo as
one party of the room and tells the page, in words, how it went. The page passes a `ui`
object whose methods (status, program, peer, progress, output, log, warning, error) show
things.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import sys
import time
import traceback
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
from ..runtime import BrowserRun, SyncStyleError
from ..signaling.protocol import ProtocolError, validate_room
from .demos import DEMOS_PACKAGE, Demo, InputError, find
from .identity import WebCryptoIdentity, verify
from .jsffi import js_object
from .party import run_program

_identity: WebCryptoIdentity | None = None


class FormError(ValueError):
    """The form cannot start a run; the text says what to fix."""


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
    """Run the form's demo as its party of its room; returns {ok, error, seconds}."""
    started = time.monotonic()
    run = BrowserRun()
    try:
        demo, args, config = _configure(form.to_py(), ui)
        # Whoever compares programs by hand (`sha256sum demos/NAME.py`) needs to see ours.
        ui.program(f"{demo.name}.py", short_hash(config.program_hash),
                   config.program_hash.hex())
        ui.status("joining", f"Joining room {config.room} as party {config.pid} of "
                             f"{config.parties}.")
        await run_program(_script(demo), args, config, ui, run)
        error = run.error and str(run.error)
    except SystemExit as exc:
        error = None if exc.code in (None, 0) else (
            f"the program stopped with exit code {exc.code} (its message is in the log)")
    except (FormError, MeshError, SyncStyleError) as exc:
        error = str(run.error or exc)
    except asyncio.CancelledError:
        if run.error is None:
            raise
        error = str(run.error)  # a lost party cancels what mpc.run waits for
    except Exception as exc:
        if run.error is None:
            ui.log("".join(traceback.format_exception(exc)))
        error = str(run.error) if run.error else f"{type(exc).__name__}: {exc}"
    seconds = round(time.monotonic() - started, 2)
    if error:
        ui.status("failed", "The run stopped.")
        ui.error(error)
    else:
        ui.status("done", f"Done in {seconds} s.")
    return js_object({"ok": not error, "error": error, "seconds": seconds})


def _configure(form: dict, ui: Any) -> tuple[Demo, list[str], MeshConfig]:
    if _identity is None:
        raise FormError("the identity key is not loaded yet")
    try:
        demo = find(form.get("demo", ""))
        room = validate_room(form.get("room", "").strip())
        parties = _number(form, "parties", "number of parties", 2)
        pid = _number(form, "party", "party index", 0)
        if pid >= parties:
            raise FormError(f"the party index must be below the number of parties, {parties}")
        roster = _roster(form, parties)
        ice_servers = parse_urls(form.get("ice", "").split())
        outage_limit = _seconds(form, "outage-limit", "outage limit")
        args = demo.arguments(form.get("input", ""), pid)
    except (InputError, RosterError, IceConfigError) as exc:
        raise FormError(str(exc)) from None
    except ProtocolError as exc:
        raise FormError(exc.message) from None
    if demo.style == "sync" and not can_run_sync():
        raise SyncStyleError(f"{demo.title} calls mpc.run() at module level, which needs a "
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
                        outage_limit=outage_limit, program_hash=program_file_hash(_script(demo)),
                        allow_different_programs=_checked(form, "allow_different_programs"),
                        host_addresses=loopback)
    return demo, args, config


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

