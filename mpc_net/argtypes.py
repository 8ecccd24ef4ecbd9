"""Numbers from the command line and from the Python API, checked the same way everywhere."""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any


def bounds_error(value: float, minimum: float, *, strict: bool = False,
                 maximum: float | None = None) -> str | None:
    """Why `value` is out of bounds (finite, at least or above `minimum`, at most `maximum`),
    or None if it is within them."""
    if not math.isfinite(value):
        return "must be a finite number"
    if value < minimum or (strict and value == minimum):
        return ("must be positive" if strict and minimum == 0 else
                f"must be {'above' if strict else 'at least'} {minimum}")
    if maximum is not None and value > maximum:
        return f"must be at most {maximum}"
    return None


def number(kind: type, minimum: float, *, strict: bool = False,
           maximum: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` within bounds (see `bounds_error`)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        error = bounds_error(value, minimum, strict=strict, maximum=maximum)
        if error is not None:
            raise argparse.ArgumentTypeError(f"{error}: {text!r}")
        return value

    return parse


positive_int = number(int, 0, strict=True)
positive_float = number(float, 0, strict=True)
# For limits and timeouts that 0 turns off.
at_least_zero_int = number(int, 0)
at_least_zero_float = number(float, 0)
# A TCP port to listen on; 0 lets the system pick a free one.
port = number(int, 0, maximum=65535)


class Parser(argparse.ArgumentParser):
    """Bad input ends in one line and exit code 2, never a usage dump or a traceback.

    `options(parser)`, if given, adds the parser's arguments when it is first used (parsed, or
    its help or usage formatted): a command's subcommands that are not run then cost only their
    name and description (and what their options import is not imported).

    Its help is as wide as argparse makes it, but the width is found once, here, and without
    shutil: argparse imports shutil (and bz2 and lzma with it, for archives) to find it
    for every formatter it makes, one per option added, and a party needs shutil for nothing.
    """

    def __init__(self, *args: Any, options: Callable[[argparse.ArgumentParser], None] | None
                 = None, formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter,
                 **kwargs: Any) -> None:
        formatter = functools.partial(formatter_class, width=_terminal_columns() - 2)
        super().__init__(*args, formatter_class=formatter, **kwargs)  # type: ignore[arg-type]
        self._options = options

    def _add_options(self) -> None:
        options, self._options = self._options, None
        if options is not None:
            options(self)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._add_options()
        return super().parse_known_args(*args, **kwargs)

    def format_usage(self) -> str:
        self._add_options()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_options()
        return super().format_help()

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _terminal_columns() -> int:
    """The columns of the terminal, as shutil.get_terminal_size() finds them: $COLUMNS, else
    the terminal on standard output, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80
