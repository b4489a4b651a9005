"""The records' JSON codec: a record and its nested records, lists, dicts and statuses written in
declaration order and read back to an equal record; optional keys absent while None; keys a record
does not declare kept and written back; a value that does not fit named with its path."""

import json
from dataclasses import dataclass, field

import pytest

from vision_bench.common import strict_json
from vision_bench.records import SweepPointStatus
from vision_bench.records.codec import RecordError, from_json, optional, to_json


@dataclass
class Inner:
    value: float
    status: SweepPointStatus = SweepPointStatus.OK
    note: str | None = optional()


@dataclass
class Outer:
    name: str
    inner: Inner | None = None
    items: list[Inner] = field(default_factory=list)
    by_name: dict[str, Inner] = field(default_factory=dict)
    free: dict = field(default_factory=dict)
    shape: list[int] | None = None


def test_a_record_round_trips_through_json_text():
    record = Outer(
        "m",
        inner=Inner(1.5, note="why"),
        items=[Inner(2.0, SweepPointStatus.OOM)],
        by_name={"a": Inner(3.0)},
        free={"anything": [1, {"x": None}]},
        shape=[1, 3, 640, 640],
    )
    data = json.loads(json.dumps(strict_json(record)))
    assert data == {
        "name": "m",
        "inner": {"value": 1.5, "status": "ok", "note": "why"},
        "items": [{"value": 2.0, "status": "oom"}],  # note: None and optional, so absent
        "by_name": {"a": {"value": 3.0, "status": "ok"}},
        "free": {"anything": [1, {"x": None}]},
        "shape": [1, 3, 640, 640],
    }
    assert list(data) == ["name", "inner", "items", "by_name", "free", "shape"]  # declaration order
    back = from_json(Outer, data)
    assert back == record
    assert back.items[0].status is SweepPointStatus.OOM


def test_none_is_null_unless_the_field_is_optional():
    assert to_json(Outer("m")) == {"name": "m", "inner": None, "items": [], "by_name": {}, "free": {}, "shape": None}


def test_undeclared_keys_are_kept_and_written_back():
    data = {"name": "m", "inner": {"value": 1.0, "status": "ok", "from_a_newer_tool": {"k": 1}}, "extra": 5}
    record = from_json(Outer, data)
    assert to_json(record)["extra"] == 5
    assert to_json(record)["inner"] == {"value": 1.0, "status": "ok", "from_a_newer_tool": {"k": 1}}


def test_a_value_that_does_not_fit_is_named_with_its_path():
    with pytest.raises(RecordError, match=r"Outer.items\[\].status: 'exploded' is not one of"):
        from_json(Outer, {"name": "m", "items": [{"value": 1.0, "status": "exploded"}]})
    with pytest.raises(RecordError, match="Outer.items: expected a list"):
        from_json(Outer, {"name": "m", "items": {"value": 1.0}})
    with pytest.raises(RecordError, match="Inner: expected a JSON object"):
        from_json(Inner, [1.0])
    with pytest.raises(RecordError, match="missing 1 required positional argument"):
        from_json(Outer, {"inner": None})
