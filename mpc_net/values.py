"""Immutable value classes that cost a fraction of frozen dataclasses to define.

A frozen dataclass compiles its `__init__`, `__repr__`, `__eq__`, `__hash__` and `__setattr__`
with `exec` when its module is imported; with some fifty of them on a party's path that was a
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
    _field_names: ClassVar[frozenset[str]] = frozenset()
    _post_init: ClassVar[bool] = False  # whether the class has a __post_init__ to call

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
        cls._field_names = frozenset(cls.__match_args__)
        cls._post_init = hasattr(cls, "__post_init__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self.__match_args__
        if kwargs or len(args) != len(names):
            args = self._arguments(args, kwargs)
        self.__dict__.update(zip(names, args, strict=True))
        if self._post_init:
            self.__post_init__()  # type: ignore[attr-defined]

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Every field's value, in order, from arguments given by position and keyword."""
        names, defaults, cls = self.__match_args__, self._defaults, type(self).__name__
        if len(args) > len(names):
            raise TypeError(f"{cls}() takes {len(names)} positional arguments but {len(args)} "
                            "were given")
        if not kwargs.keys() <= self._field_names:
            unknown = min(kwargs.keys() - self._field_names)
            raise TypeError(f"{cls}() got an unexpected keyword argument {unknown!r}")
        if twice := kwargs.keys() & set(names[:len(args)]):
            raise TypeError(f"{cls}() got multiple values for argument {min(twice)!r}")
        values = list(args)
        for name in names[len(args):]:
            if name in kwargs:
                values.append(kwargs[name])
            elif name in defaults:
                default = defaults[name]
                values.append(default.make() if isinstance(default, factory) else default)
            else:
                raise TypeError(f"{cls}() missing required argument {name!r}")
        return tuple(values)

    def _values(self) -> tuple[Any, ...]:
        return tuple(map(self.__dict__.__getitem__, self.__match_args__))

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
