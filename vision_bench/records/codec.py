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
from collections.abc import Callable
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


Decoder = Callable[[Any, str], Any]  # (JSON value, its path in the file) -> the value read


def keep_value(value: Any, where: str) -> Any:
    """The decoder of an annotation that builds nothing (a number, a string, a free-form object)."""
    return value


@functools.cache
def record_plan(cls: type) -> tuple[tuple[tuple[str, Decoder], ...], frozenset[str]]:
    """Each field's name and decoder, in declaration order, and the declared names: worked out once
    a class, since a results file holds thousands of records."""
    types_of = field_types(cls)
    fields = tuple((f.name, decoder(types_of[f.name])) for f in dataclasses.fields(cls))
    return fields, frozenset(name for name, _ in fields)


def from_json(cls: type[Record], data: Any, where: str = "") -> Record:
    """A `cls` record from its JSON object; missing keys take the fields' defaults. `where` is the
    path of the object in the file, for the error messages."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields, declared = record_plan(typing.cast(type, cls))
    values = {}
    for name, read in fields:
        if name in data:
            value = data[name]
            values[name] = value if read is keep_value else read(value, f"{where}.{name}")
    try:
        record = cls(**values)
    except TypeError as exc:  # a required key missing
        raise RecordError(f"{where}: {exc}") from None
    if not declared.issuperset(data):
        object.__setattr__(record, UNDECLARED, {key: value for key, value in data.items() if key not in declared})
    return record


def decode(annotation: Any, value: Any, where: str) -> Any:
    """`value` read as `annotation`: records and enums built, containers item by item, the rest as is."""
    return decoder(annotation)(value, where)


def decoder(annotation: Any) -> Decoder:
    """The function that reads a JSON value as `annotation`, made once an annotation: the annotation's
    shape (typing.get_origin/get_args) is looked at here, not again for every value."""
    try:
        return cached_decoder(annotation)
    except TypeError:  # an unhashable annotation: made each time
        return build_decoder(annotation)


def build_decoder(annotation: Any) -> Decoder:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return union_decoder([a for a in args if a is not type(None)])
    if origin is list and args:
        return list_decoder(decoder(args[0]))
    if origin is dict and len(args) == 2:
        return dict_decoder(decoder(args[1]))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return record_decoder(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return enum_decoder(annotation)
    return keep_value


cached_decoder = functools.cache(build_decoder)


def list_decoder(read_item: Decoder) -> Decoder:
    def read_list(value: Any, where: str) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        if read_item is keep_value:
            return list(value)
        where = f"{where}[]"
        return [read_item(item, where) for item in value]

    return read_list


def dict_decoder(read_item: Decoder) -> Decoder:
    def read_dict(value: Any, where: str) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        if read_item is keep_value:
            return dict(value)
        return {key: read_item(item, f"{where}.{key}") for key, item in value.items()}

    return read_dict


def record_decoder(cls: type) -> Decoder:
    def read_record(value: Any, where: str) -> Any:
        return None if value is None else from_json(cls, value, where)

    return read_record


def enum_decoder(cls: type[enum.Enum]) -> Decoder:
    def read_enum(value: Any, where: str) -> Any:
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            raise RecordError(f"{where}: {value!r} is not one of {[m.value for m in cls]}") from None

    return read_enum


def union_decoder(options: list) -> Decoder:
    """`X | Y`: the first record type a JSON object fits, the first enum a string is a value of, the
    first list type a list fits, else the value as it is (a number, a string, a free-form object)."""
    if len(options) == 1:
        return decoder(options[0])
    plan = [
        (
            option,
            isinstance(option, type) and dataclasses.is_dataclass(option),
            tuple(m.value for m in option) if isinstance(option, type) and issubclass(option, enum.Enum) else None,
            decoder(option) if typing.get_origin(option) is list else None,
        )
        for option in options
    ]
    if not any(is_dataclass or values is not None or read_list for _, is_dataclass, values, read_list in plan):
        return keep_value

    def read_union(value: Any, where: str) -> Any:
        for option, is_dataclass, values, read_list in plan:
            if is_dataclass and isinstance(value, dict):
                return from_json(option, value, where)
            if values is not None and isinstance(value, str) and value in values:
                return option(value)
            if read_list is not None and isinstance(value, list):
                return read_list(value, where)
        return value

    return read_union
