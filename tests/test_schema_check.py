"""The fast pre-check of a results file (results_file.compiled_check) and the schema with its
definitions inlined (results_file.with_definitions_inlined) against jsonschema on the published
schema as it is: on valid files and on every value of them edited in turn (wrong type, out of
range, a bad status, a key removed or added), the pre-check says "valid" exactly when jsonschema
does, and the inlined schema finds the same error. A schema using a keyword the pre-check does not
know gets no pre-check, so that every file then goes to jsonschema."""

import copy
import json

import jsonschema
import pytest
from test_compare_and_merge import mergeable_model, synthetic_model, tight

from vision_bench.reports.results_file import (
    SCHEMA_FILE,
    NotAFiniteNumber,
    compiled_check,
    results_prechecks,
    results_validators,
    schema_error_text,
)

EDITS = ("text", -1.0, 0, 2.5, None, True, [], {}, NotAFiniteNumber("NaN"), "complete", "timed", "")


def documents() -> list[dict]:
    """A file of one complete model with every figure (what --merge takes), and one of two models,
    one failed, with runs of each kind and a machine state."""
    complete = mergeable_model("Net", tight(0.05, n=4))
    failed = synthetic_model("Other", tight(0.07, n=3), status="failed") | {
        "error": {"type": "RuntimeError", "message": "boom"},
        "phase": "load",
    }
    failed["runs"][1]["state"] = {"flags": ["busy"], "load1": 1.5, "other_cpu_share": 0.2, "own_cpu_share": 0.9}
    failed["phase_seconds"] = {"load": 0.5, "measure": None}
    head = {
        "schema": "unified-benchmark/3",
        "run_id": "20260101_000000",
        "status": "complete",
        "images": ["/x/a.jpg"],
        "config": {"runs_per_image": 4, "seed": 42},
        "system": {"gpu": None, "cpu": "x86_64", "torch": "2.14.1"},
        "total_seconds": 3.0,
    }
    return [head | {"models": [complete]}, head | {"models": [complete, failed]}]


def edited(document: dict):
    """Copies of `document`, each with one value replaced by one of EDITS, one key removed, or one
    key added, at every place in it."""

    def places(node, path):
        yield path
        if isinstance(node, dict):
            for key, value in node.items():
                yield from places(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from places(value, (*path, index))

    for path in list(places(document, ()))[1:]:
        for edit in (*EDITS, "remove", "add"):
            copied = copy.deepcopy(document)
            parent = copied
            for step in path[:-1]:
                parent = parent[step]
            if edit == "remove" and isinstance(parent, dict):
                del parent[path[-1]]
            elif edit == "add" and isinstance(parent[path[-1]], dict):
                parent[path[-1]]["added_key"] = -1
            elif edit not in ("remove", "add"):
                parent[path[-1]] = edit
            else:
                continue
            yield path, copied


def reference_validators():
    """jsonschema on the schema file as published ($refs resolved by jsonschema)."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    mergeable = {"$ref": "#/$defs/mergeable_file", "$defs": schema["$defs"]}
    return jsonschema.Draft202012Validator(schema), jsonschema.Draft202012Validator(mergeable)


def error_text(validator, document) -> str | None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    return None if error is None else schema_error_text(error)


def test_the_pre_check_and_the_inlined_schema_agree_with_jsonschema_on_every_edit():
    references = reference_validators()
    prechecks = results_prechecks()
    inlined = results_validators()
    assert all(check.__name__ != "never_passes" for check in prechecks)  # the published schema is compiled
    checked = rejected = 0
    for document in documents():
        assert references[0].is_valid(document) and prechecks[0](document)
        assert prechecks[1](document) == references[1].is_valid(document)  # --merge: complete models' figures
        for path, copied in edited(document):
            for reference, precheck, fast in zip(references, prechecks, inlined):
                expected = error_text(reference, copied)
                assert precheck(copied) == (expected is None), (path, copied)
                assert error_text(fast, copied) == expected, path
                checked += 1
                rejected += expected is not None
    assert checked > 1000 and 0.2 < rejected / checked < 0.9  # the edits reach both answers, many times


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {"^x": {"type": "number"}}},  # a keyword it does not know
        {"$ref": "#/$defs/node", "$defs": {"node": {"properties": {"child": {"$ref": "#/$defs/node"}}}}},  # recursive
        {"$ref": "other.json#/thing"},  # a reference elsewhere
        {"enum": [1, 2]},  # enum options other than strings and null
        {"properties": {"a": {"$id": "https://x/a", "$ref": "#/$defs/b"}}, "$defs": {"b": {}}},  # an $id below the top
    ],
)
def test_a_schema_the_pre_check_does_not_know_gets_none(schema):
    assert compiled_check(schema) is None


def test_the_pre_check_keeps_json_types_apart():
    check = compiled_check({"properties": {"n": {"type": "integer"}, "x": {"type": "number", "minimum": 0}}})
    assert check is not None
    assert check({"n": 3, "x": 0.5}) and check({"n": 3.0, "x": 0})  # 3.0 is an integer in JSON Schema
    assert not check({"n": True}) and not check({"x": False}) and not check({"x": -0.1}) and not check({"n": 3.5})
    assert not check({"x": NotAFiniteNumber("Infinity")})
