"""The one place where records become JSON values and back.

`to_json(record)` writes a dataclass's fields in declaration order: nested records, lists and dicts
of them, StrEnum statuses by their value. A field declared with `optional()` is left out while it is
None (a key the file holds only sometimes); a field declared with `absent()` is left out while it
holds ABSENT, its default, so that it may also hold None and be written as null (a key present with
null in some files, missing in others); every other field is always written, None as null.
`from_json(cls, data)` reads it back by the fields' annotations. Keys a record does not declare (a
file written by another version of the tool) are kept on the instance and written back unchanged,
so reading and writing a file loses nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any, TypeVar

OPTIONAL = "vision_bench.optional"
UNDECLARED = "_undeclared_json"  # where from_json keeps the keys a record does not declare

Record = TypeVar("Record")


class RecordError(ValueError):
    """A JSON value that does not fit the record read from it."""


def optional(default: Any = None) -> Any:
    """A field whose key is absent from the JSON while its value is None."""
    return dataclasses.field(default=default, metadata={OPTIONAL: True})


class Absent:
    """The value of an `absent()` field whose key the JSON does not hold: falsy, and one instance,
    also through pickle."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT: Any = Absent()


def absent() -> Any:
    """A field whose key is absent from the JSON until it is given a value (None included)."""
    return dataclasses.field(default=ABSENT)


def known(value: Any) -> Any:
    """An `absent()` field's value, None when the JSON did not hold its key."""
    return None if value is ABSENT else value


def is_record(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def to_json(record: Any) -> dict:
    """The record as a JSON object (dict), its nested records and statuses converted."""
    out: dict = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if (value is None and f.metadata.get(OPTIONAL)) or value is ABSENT:
            continue
        out[f.name] = encode(value)
    out.update(encode(getattr(record, UNDECLARED, None) or {}))
    return out


def encode(value: Any) -> Any:
    """Any value as JSON data: records through to_json, enums by value, containers item by item."""
    if is_record(value):
        return to_json(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    return value


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(cls: type[Record], data: Any, where: str = "") -> Record:
    """A `cls` record from its JSON object; missing keys take the fields' defaults. `where` is the
    path of the object in the file, for the error messages."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    types_of = field_types(typing.cast(type, cls))
    declared = [f.name for f in dataclasses.fields(typing.cast(type, cls))]
    values = {name: decode(types_of[name], data[name], f"{where}.{name}") for name in declared if name in data}
    try:
        record = cls(**values)
    except TypeError as exc:  # a required key missing
        raise RecordError(f"{where}: {exc}") from None
    undeclared = {key: value for key, value in data.items() if key not in declared}
    if undeclared:
        object.__setattr__(record, UNDECLARED, undeclared)
    return record


def decode(annotation: Any, value: Any, where: str) -> Any:
    """`value` read as `annotation`: records and enums built, containers item by item, the rest as is."""
    if value is None:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return decode_union([a for a in args if a is not type(None)], value, where)
    if origin is list and args:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        return [decode(args[0], item, f"{where}[]") for item in value]
    if origin is dict and len(args) == 2:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        return {key: decode(args[1], item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return from_json(annotation, value, where)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            raise RecordError(f"{where}: {value!r} is not one of {[m.value for m in annotation]}") from None
    return value


def decode_union(options: list, value: Any, where: str) -> Any:
    """`X | Y`: the first record type a JSON object fits, the first enum a string is a value of,
    else the value as it is (a number, a string, a free-form object)."""
    if len(options) == 1:
        return decode(options[0], value, where)
    for option in options:
        if isinstance(value, dict) and isinstance(option, type) and dataclasses.is_dataclass(option):
            return from_json(option, value, where)
        if isinstance(value, str) and isinstance(option, type) and issubclass(option, enum.Enum):
            if value in {m.value for m in option}:
                return option(value)
        if typing.get_origin(option) is list and isinstance(value, list):
            return decode(option, value, where)
    return value
