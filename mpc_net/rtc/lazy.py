"""Loaders that run a module with part of what it does at import deferred to its first use
(for lean.py)."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.machinery
import re
import sys
import threading
from types import ModuleType
from typing import Any

from .compiled import cached_methods

_compile = re.compile


class _WrappingLoader:
    """A module's own loader, run with something changed while the module's code runs."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def _exec_with(self, module: ModuleType, owner: object, name: str, value: Any) -> None:
        """Run `module` with `owner.name` set to `value` meanwhile."""
        outer = getattr(owner, name)
        setattr(owner, name, value)
        try:
            self.loader.exec_module(module)
        finally:
            setattr(owner, name, outer)

    def __getattr__(self, name: str) -> Any:  # the rest of the loader's interface
        return getattr(self.loader, name)


class LazyPatternsLoader(_WrappingLoader):
    """Runs a module with `re.compile`, called from its own code, deferred to first use."""

    def exec_module(self, module: ModuleType) -> None:
        def compile_later(pattern: str, flags: int = 0) -> re.Pattern | _LazyPattern:
            if sys._getframe(1).f_globals is not module.__dict__:  # another module's call
                return _compile(pattern, flags)
            return _LazyPattern(pattern, flags)

        self._exec_with(module, re, "compile", compile_later)


class LazyNamesLoader(_WrappingLoader):
    """Runs a package with one submodule standing in for names it takes from it (the
    submodule's own import happens later), then gives the package a module __getattr__ that
    imports the submodule when one of those names is first read."""

    def __init__(self, loader: Any, submodule: str) -> None:
        super().__init__(loader)
        self.submodule = submodule

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


_dataclass = dataclasses.dataclass


class LazyDataclassesLoader(_WrappingLoader):
    """Runs a module with each dataclass it declares made one when first used: its class is
    made as written, and its dataclass methods and fields are generated (as `dataclasses` does
    at import, compiling each method) when one of them, or its fields, is first read."""

    def exec_module(self, module: ModuleType) -> None:
        def dataclass(cls: type | None = None, /, **options: Any) -> Any:
            if cls is None:
                return functools.partial(dataclass, **options)
            # Another module's (a nested import's), or with options (frozen: other methods): now.
            if cls.__module__ != module.__name__ or options:
                return _dataclass(cls, **options)
            for name in _DATACLASS_NAMES:
                if name not in cls.__dict__:
                    setattr(cls, name, _Ungenerated(cls, name))
            return cls

        self._exec_with(module, dataclasses, "dataclass", dataclass)


# What `dataclasses` sets on a class (without options) that its first use reads: making one,
# printing, comparing or hashing one, a match statement, dataclasses.fields (and a subclass's
# dataclass). (Its docstring, made from the signature if it has none, is made then too.)
_DATACLASS_NAMES = ("__init__", "__repr__", "__eq__", "__hash__", "__match_args__",
                    "__dataclass_fields__", "__dataclass_params__")
_generating = threading.RLock()  # aiortc's classes may first be used in two threads at once


class _Ungenerated:
    """One of _DATACLASS_NAMES of a class not yet a dataclass: read, it makes the class one."""

    __slots__ = ("cls", "name")

    def __init__(self, cls: type, name: str) -> None:
        self.cls, self.name = cls, name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        cls = self.cls
        with _generating:
            if cls.__dict__.get(self.name) is self:  # not made a dataclass meanwhile
                for name in _DATACLASS_NAMES:
                    if isinstance(cls.__dict__.get(name), _Ungenerated):
                        delattr(cls, name)
                with cached_methods():
                    _dataclass(cls)
        return getattr(owner if instance is None else instance, self.name)
