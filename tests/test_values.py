"""values.Value behaves as the frozen dataclass it replaces: each check runs on both."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import ClassVar

import pytest

from mpc_net.values import Value, factory


@dataclasses.dataclass(frozen=True)
class DataPoint:
    party: int
    reason: str
    current: bool = True
    notes: list = dataclasses.field(default_factory=list)
    kind: ClassVar[str] = "point"


class ValuePoint(Value):
    party: int
    reason: str
    current: bool = True
    notes: list = factory(list)
    kind: ClassVar[str] = "point"


@dataclasses.dataclass(frozen=True)
class DataOther:
    party: int
    reason: str
    current: bool = True
    notes: list = dataclasses.field(default_factory=list)


class ValueOther(Value):
    party: int
    reason: str
    current: bool = True
    notes: list = factory(list)


class Base(Value):
    party: int


class Derived(Base):
    label: str = "x"

    def __post_init__(self) -> None:
        if self.party < 0:
            raise ValueError("negative party")


BOTH = [(DataPoint, DataOther), (ValuePoint, ValueOther)]


@pytest.mark.parametrize(("point", "other"), BOTH)
def test_construction_equality_hash_and_repr_are_a_frozen_dataclass_s(point, other) -> None:
    a = point(2, "gone")
    assert (a.party, a.reason, a.current, a.notes) == (2, "gone", True, [])
    assert a == point(party=2, reason="gone", current=True) == point(2, reason="gone")
    assert a != point(2, "gone", False)
    assert a.notes is not point(2, "gone").notes  # a fresh default each time
    assert point.kind == "point" and a.kind == "point"  # a ClassVar is no field
    assert a != other(2, "gone")  # equal fields, another class
    assert a.__eq__(other(2, "gone")) is NotImplemented
    b = point(2, "gone", notes=())
    assert hash(b) == hash(point(2, "gone", True, ()))
    with pytest.raises(TypeError):
        hash(a)  # a list field: unhashable, as the dataclass
    assert repr(b) == f"{point.__name__}(party=2, reason='gone', current=True, notes=())"
    assert point.__match_args__ == ("party", "reason", "current", "notes")


@pytest.mark.parametrize(("point", "_"), BOTH)
def test_it_cannot_change_and_refuses_wrong_arguments(point, _) -> None:
    a = point(2, "gone")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.party = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        del a.party
    for args, kwargs in [((), {}), ((1,), {}), ((1, "r", True, [], 5), {}),
                         ((1, "r"), {"party": 1}), ((1, "r"), {"colour": 1})]:
        with pytest.raises(TypeError):
            point(*args, **kwargs)


@pytest.mark.parametrize(("point", "_"), BOTH)
def test_patterns_copies_pickles_and_dataclasses_functions_work(point, _) -> None:
    a = point(2, "gone", False, ["x"])
    match a:
        case point(party, reason, current):
            assert (party, reason, current) == (2, "gone", False)
        case _:
            pytest.fail("no match")
    assert copy.copy(a) == a and copy.deepcopy(a) == a
    assert pickle.loads(pickle.dumps(a)) == a
    assert dataclasses.is_dataclass(a)
    assert [f.name for f in dataclasses.fields(a)] == ["party", "reason", "current", "notes"]
    assert dataclasses.asdict(a) == {"party": 2, "reason": "gone", "current": False,
                                     "notes": ["x"]}
    assert dataclasses.replace(a, reason="back") == point(2, "back", False, ["x"])


def test_fields_follow_the_bases_and_post_init_runs_on_every_construction() -> None:
    assert Derived.__match_args__ == ("party", "label")
    assert Derived(3) == Derived(party=3, label="x") != Base(3)
    assert repr(Derived(3, "y")) == "Derived(party=3, label='y')"
    with pytest.raises(ValueError, match="negative party"):
        Derived(-1)
    with pytest.raises(ValueError, match="negative party"):
        dataclasses.replace(Derived(3), party=-1)


@dataclasses.dataclass
class DataRecord:
    party: int
    seen: float = 0.0


class ValueRecord(Value, mutable=True):
    party: int
    seen: float = 0.0


@pytest.mark.parametrize("record", [DataRecord, ValueRecord])
def test_a_mutable_one_changes_and_has_no_hash(record) -> None:
    a = record(1)
    a.seen = 2.5
    assert a == record(1, 2.5) != record(1)
    with pytest.raises(TypeError):
        hash(a)
    assert dataclasses.replace(a, party=2) == record(2, 2.5)
