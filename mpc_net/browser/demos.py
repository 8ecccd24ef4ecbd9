"""The demos a page offers, and how a person's input becomes the demo's own arguments.

Pure code: the build writes `catalog()` into the bundle so that the page can show the form
before Python has loaded, and the page's Python turns the form into program arguments with
`arguments()`. The demos take per-party inputs as a list where party i uses the i-th value
modulo the list's length; a list of i + 1 copies of one value gives party i exactly that value.
"""

from __future__ import annotations

import dataclasses

DEMOS_PACKAGE = "mpc_net_demos"  # the wheel the build makes of demos/


class InputError(ValueError):
    """An input that the demo cannot take; the text says what is expected."""


@dataclasses.dataclass(frozen=True)
class Demo:
    name: str  # demos/<name>.py
    title: str
    # "async": one mpc.run(main()); "sync": mpc.run(...) at module level, which needs JSPI.
    style: str
    input_label: str
    # "private": this party's own input; "public": the same value on every party.
    input_kind: str
    placeholder: str
    option: str | None = None  # the flag the value goes with; None: positional

    def arguments(self, value: str, pid: int) -> list[str]:
        value = value.strip()
        if not value:
            return []  # the demo's defaults, as in `python demos/<name>.py -M m`
        if any(c.isspace() for c in value):
            raise InputError(f"{self.input_label}: no spaces, please (e.g. {self.placeholder})")
        values = [value] * (pid + 1) if self.input_kind == "private" else [value]
        if self.option is None:
            return values
        return [self.option, ",".join(values)]


DEMOS = (
    Demo("auction", "Sealed-bid second-price auction", "async", "Your bid", "private", "75",
         option="--bids"),
    Demo("stats", "Mean and variance of private numbers", "async", "Your number", "private",
         "42"),
    Demo("sort", "Secure sort of private lists", "async", "Your list", "private", "4,9,1"),
    Demo("secretsanta", "Secret Santa (synchronous style)", "sync", "Participants (all parties)",
         "public", "6"),
    Demo("comparisons", "Comparison burst (benchmark)", "async", "Comparisons (all parties)",
         "public", "200"),
)


def find(name: str) -> Demo:
    for demo in DEMOS:
        if demo.name == name:
            return demo
    raise InputError(f"no demo called {name!r}; there are {', '.join(d.name for d in DEMOS)}")


def catalog() -> list[dict]:
    return [dataclasses.asdict(demo) for demo in DEMOS]
