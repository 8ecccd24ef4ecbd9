"""Loaders that run a module with part of what it does at import deferred to its first use
(for lean.py)."""

from __future__ import annotations

import importlib
import importlib.machinery
import re
import sys
from types import ModuleType
from typing import Any

_compile = re.compile


class LazyPatternsLoader:
    """Runs a module with `re.compile`, called from its own code, deferred to first use."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        def compile_later(pattern: str, flags: int = 0) -> re.Pattern | _LazyPattern:
            if sys._getframe(1).f_globals is not module.__dict__:  # another module's call
                return _compile(pattern, flags)
            return _LazyPattern(pattern, flags)

        re.compile = compile_later  # type: ignore[assignment]
        try:
            self.loader.exec_module(module)
        finally:
            re.compile = _compile

    def __getattr__(self, name: str) -> Any:  # the rest of the loader's interface
        return getattr(self.loader, name)


class LazyNamesLoader:
    """Runs a package with one submodule standing in for names it takes from it (the
    submodule's own import happens later), then gives the package a module __getattr__ that
    imports the submodule when one of those names is first read."""

    def __init__(self, loader: Any, submodule: str) -> None:
        self.loader, self.submodule = loader, submodule

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        submodule, taken = self.submodule, _TakenNames(self.submodule)
        sys.modules[submodule] = taken
        try:
            self.loader.exec_module(module)
        finally:
            if sys.modules.get(submodule) is taken:
                del sys.modules[submodule]
        names = {name for name, value in vars(module).items() if value is _TakenNames.TAKEN}
        for name in names:
            delattr(module, name)

        def take(name: str) -> Any:
            if name not in names:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            value = getattr(importlib.import_module(submodule), name)
            setattr(module, name, value)
            return value

        module.__getattr__ = take  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:  # the rest of the loader's interface
        return getattr(self.loader, name)


class _TakenNames(ModuleType):
    TAKEN = object()  # what each name read from it is, while its package runs

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _TakenNames.TAKEN


class _LazyPattern:
    """A regular expression that compiles when one of its methods or attributes is first read."""

    def __init__(self, pattern: str, flags: int) -> None:
        self._source = pattern, flags
        self._compiled: re.Pattern | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("_source", "_compiled"):  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        if self._compiled is None:
            self._compiled = _compile(*self._source)
        return getattr(self._compiled, name)
