"""The methods `dataclasses` generates for aiortc's and websockets' classes, compiled once and
kept, as Python keeps bytecode.

`dataclasses` writes each class's `__init__`, `__repr__`, `__eq__` (and, for frozen ones, more)
as source text and compiles it with `exec` whenever the class is made: 39 functions for the
dataclasses aiortc and websockets make at import, and more for those made on a connection's way
(rtc/lazy.py), parsed and compiled anew at every start (about 8 % of the instructions a party's
imports run beyond MPyC's). Within `cached_methods`, dataclasses' `exec` runs the code compiled
from the same text by an earlier start, read from a cache file beside mpc-net's own bytecode
(`__pycache__` of this package, or under sys.pycache_prefix), and compiles only texts it has not
seen; new ones are written when the outermost `cached_methods` ends, unless Python writes no
bytecode (PYTHONDONTWRITEBYTECODE, -B). The file is trusted as the `.pyc` files beside it are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import marshal
import os
import sys
import threading
from collections.abc import Iterator
from types import CodeType
from typing import Any

# The bytecode path of a source file that does not exist (Python never imports a `.pyc` from
# `__pycache__` without its source); its name carries the interpreter and optimization level.
CACHE_FILE = importlib.util.cache_from_source(os.path.join(os.path.dirname(__file__),
                                                           "dataclass_methods.py"))

_lock = threading.Lock()
_depth = 0  # cached_methods entered and not yet left, in any thread
_codes: dict[str, CodeType] | None = None  # read from CACHE_FILE when first needed
_unsaved = False


@contextlib.contextmanager
def cached_methods() -> Iterator[None]:
    """Within (in every thread): the methods dataclasses generates come from the cache."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:  # dataclasses finds `exec` in its own namespace before builtins'
            vars(dataclasses)["exec"] = _exec
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                del vars(dataclasses)["exec"]
                _save()


def _exec(source: Any, globals: dict[str, Any], locals: dict[str, Any], /) -> None:
    """dataclasses' `exec(text, globals, namespace)`, with the text's code from the cache."""
    global _codes, _unsaved
    if not isinstance(source, str):
        exec(source, globals, locals)
        return
    if _codes is None:
        _codes = _load()
    code = _codes.get(source)
    if type(code) is not CodeType:
        # As exec compiles it there: dataclasses has no __future__ imports to inherit, this
        # module has.
        code = _codes[source] = compile(source, "<string>", "exec", dont_inherit=True)
        _unsaved = True
    exec(code, globals, locals)


def _load() -> dict[str, CodeType]:
    try:
        with open(CACHE_FILE, "rb") as file:
            data = file.read()
        if data[:4] == importlib.util.MAGIC_NUMBER:
            codes = marshal.loads(data[4:])
            if isinstance(codes, dict):
                return codes
    except (OSError, ValueError, EOFError, TypeError):  # none yet, or unreadable: start anew
        pass
    return {}


def _save() -> None:
    """Write the cache if it has new code (whole, then renamed: parties start side by side)."""
    global _unsaved
    if not _unsaved or _codes is None or sys.dont_write_bytecode:
        return
    _unsaved = False
    partial = f"{CACHE_FILE}.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(CACHE_FILE), exist_ok=True)
        with open(partial, "wb") as file:
            file.write(importlib.util.MAGIC_NUMBER + marshal.dumps(_codes))
        os.replace(partial, CACHE_FILE)
    except OSError:  # a read-only installation: compiled anew next time, as without the cache
        with contextlib.suppress(OSError):
            os.unlink(partial)
