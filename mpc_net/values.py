"""Immutable value classes that cost a fraction of frozen dataclasses to define.

A frozen dataclass compiles its `__init__`, `__repr__`, `__eq__`, `__hash__` and `__setattr__`
with `exec` when its module is imported; with some forty of them on a party's path that was a
noticeable share of its start-up. A `Value` subclass declares its fields as annotations, as a
dataclass does, and shares one generic implementation of each: keyword or positional
construction with defaults (`factory(f)` for a fresh default per instance), `__post_init__`,
equality only between instances of the same class (`Offer(2) != Close(2)`), a hash and repr of
the fields, `__match_args__` for class patterns, and no assignment after construction
(`dataclasses.FrozenInstanceError`, as a frozen dataclass), unless the class is declared with
`mutable=True` (then, as a plain dataclass, it has no hash). `dataclasses.fields`, `replace` and
`asdict` work on them too: the dataclass description of the fields is made when asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any, ClassVar


class factory:
    """A field's default made afresh for each instance by calling `make`."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class _DataclassFields:
    """`__dataclass_fields__`, made for a class whenever read (from the class or an instance)."""

    def __get__(self, instance: object, owner: type[Value]) -> dict[str, dataclasses.Field]:
        def spec(name: str) -> tuple[str, type, dataclasses.Field]:
            default = owner._defaults.get(name, dataclasses.MISSING)
            field = (dataclasses.field(default_factory=default.make)
                     if isinstance(default, factory) else dataclasses.field(default=default))
            return name, object, field

        # Not kept: only dataclasses' functions ask, and rarely (tests, debugging).
        return dataclasses.make_dataclass(owner.__name__, map(spec, owner.__match_args__)
                                          ).__dataclass_fields__


class Value:
    """Fields are the class's annotations (after its bases'), except `ClassVar` ones."""

    __dataclass_fields__ = _DataclassFields()

    __match_args__: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, *, mutable: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if mutable:  # as a dataclass that is not frozen: fields may change, no hash
            cls.__setattr__ = object.__setattr__  # type: ignore[method-assign,assignment]
            cls.__delattr__ = object.__delattr__  # type: ignore[method-assign,assignment]
            cls.__hash__ = None  # type: ignore[assignment]
        own = [name for name, annotation in cls.__dict__.get("__annotations__", {}).items()
               if not str(annotation).startswith(("ClassVar", "typing.ClassVar"))]
        cls.__match_args__ = (*cls.__match_args__, *(n for n in own if n not in cls.__match_args__))
        cls._defaults = {**cls._defaults, **{n: cls.__dict__[n] for n in own if n in cls.__dict__}}
        for name, default in cls._defaults.items():
            if isinstance(default, factory) and name in cls.__dict__:
                delattr(cls, name)  # as a dataclass: no class attribute for a factory default

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self.__match_args__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} positional arguments "
                            f"but {len(args)} were given")
        values = dict(zip(names, args, strict=False))  # fewer arguments than fields
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"{name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument "
                                f"{name!r}")
            values[name] = value
        for name in names:
            if name in values:
                value = values[name]
            elif name in self._defaults:
                value = self._defaults[name]
                value = value.make() if isinstance(value, factory) else value
            else:
                raise TypeError(f"{type(self).__name__}() missing required argument {name!r}")
            object.__setattr__(self, name, value)
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
