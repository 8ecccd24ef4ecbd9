"""The entry points the web app's JavaScript calls; the page itself is only glue.

`prepare` loads this browser's identity key; `join` checks the form, runs the chosen demo as
one party of the room and tells the page, in words, how it went. The page passes a `ui`
object whose methods (status, peer, progress, output, log, warning, error) show things.
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

from ..auth import Roster, RosterError, encode_public_key
from ..config import key_holder_problem, signal_url_problem
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
    return js_object({"publicKey": _identity.public_text,
                      "python": sys.version.split()[0]})


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
        roster = Roster.from_json(form.get("roster", ""))
        if len(roster) != parties:
            raise FormError(f"the roster lists {len(roster)} parties, not {parties}")
        ice_servers = parse_urls(form.get("ice", "").split())
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
    where = key_holder_problem(roster, _identity.public_key, pid)
    if where is not None:
        # Joining anyway lets every party see the refusal, instead of waiting for us.
        ui.warning(f"Your key {encode_public_key(_identity.public_key)} {where}, not party "
                   f"{pid}'s: the other parties will refuse this browser.")
    # As natively: with the room server on loopback, so are the parties.
    loopback = ["127.0.0.1"] if is_loopback_host(urlsplit(signal).hostname) else None
    config = MeshConfig(signaling_url=signal, room=room, pid=pid, parties=parties,
                        identity=_identity, verify=verify, roster=roster,
                        ice_servers=ice_servers, host_addresses=loopback)
    return demo, args, config


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

