"""The results file: its schema name, its file names, the run's time accounting, and reading it
back (--compare, --merge, --history: checked against the schema, fast) with the accessors that know
its older layouts."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..common import UsageError, exception_line
from ..phases import MEASURING_PHASES
from ..records.measurement import RunKind, RunRecord
from ..records.model_result import ModelResult
from ..records.run_config import with_undeclared
from ..records.run_document import PHASE_FIELDS, PhaseTotals, RunDocument, ShardWall, SlotSpan, read_document


def report_paths(ctx) -> dict:
    return {
        "json": ctx.results_dir / f"benchmark_results_{ctx.run_id}.json",
        "csv": ctx.results_dir / f"benchmark_summary_{ctx.run_id}.csv",
        "md": ctx.results_dir / f"benchmark_report_{ctx.run_id}.md",
        "html": ctx.results_dir / f"benchmark_report_{ctx.run_id}.html",
    }


RESULTS_SCHEMA = "unified-benchmark/3"  # 3: per-model "variants" (--variants); optional per-model "trace" (--trace)
# and "sweep" (--batch-sizes, --input-sizes)


def phase_totals(
    results: list[ModelResult],
    total_seconds: float,
    slots: list[SlotSpan] | None = None,
    shards: list[ShardWall] | None = None,
) -> PhaseTotals:
    """Seconds per phase summed over the models, and the overhead: the time available minus the
    measuring phases (worker start, output pictures, cleanup, reports, start-up). The time available
    is the wall time; with --devices (`slots`: each device slot's busy seconds) it is the slots' busy
    time plus the parent's time outside them, since the slots measure in parallel. For --merge
    (`shards`: each file's wall time) the wall time is the shards' sum, labelled so. Never clamped:
    a negative overhead would be an accounting error, and is shown as one."""
    sums: dict[str, float] = {}
    for r in results:
        for name, seconds in (r.phase_seconds or {}).items():
            if seconds is not None:
                sums[name] = sums.get(name, 0.0) + seconds
    measured = sum(sums.get(name, 0.0) for name in MEASURING_PHASES)
    declared = {name: seconds for name, seconds in sums.items() if name in PHASE_FIELDS}
    out = PhaseTotals(**declared, wall=total_seconds, measuring=measured)  # type: ignore[arg-type]
    with_undeclared(out, {name: seconds for name, seconds in sums.items() if name not in PHASE_FIELDS})
    available = total_seconds
    if slots:
        for slot in slots:
            mine = [r for r in results if r.device_slot == slot.slot]
            slot.measuring = sum(
                seconds
                for r in mine
                for name, seconds in (r.phase_seconds or {}).items()
                if name in MEASURING_PHASES and seconds is not None
            )
            slot.overhead = slot.busy - slot.measuring
            slot.models = [r.model for r in mine]
        parallel = max(s.end for s in slots) - min(s.start for s in slots)
        available = total_seconds - parallel + sum(s.busy for s in slots)
        out.slots, out.outside_slots, out.available = slots, total_seconds - parallel, available
    if shards:
        out.shards = shards
        out.wall_kind = f"sum of {len(shards)} files' wall times"
    out.overhead = available - measured
    return out


SCHEMAS_READ = ("unified-benchmark/1", "unified-benchmark/2", RESULTS_SCHEMA)  # earlier layouts are still read
SCHEMA_FILE = Path(__file__).with_name("results_schema.json")  # the published format; --compare/--merge check it
MAX_INTEGER_DIGITS = 30


class NotAFiniteNumber:
    """What a number JSON cannot hold (NaN, Infinity, 1e999, a 5,000-digit integer) parses to, so
    that the schema rejects it with its JSON path instead of the parser failing without one."""

    def __init__(self, text: str):
        self.text = text if len(text) <= 20 else f"{text[:8]}... ({len(text)} characters)"

    def __repr__(self) -> str:
        return f"{self.text} (not a finite number)"


def parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else NotAFiniteNumber(text)


def parse_int(text: str):
    return int(text) if len(text.lstrip("-")) <= MAX_INTEGER_DIGITS else NotAFiniteNumber(text)


def describe(value) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_error_text(error) -> str:
    """One line: where in the file, what was expected, what was there."""
    where = error.json_path
    if error.validator == "type":
        expected = (
            error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        )
        return f"{where}: expected {expected}, found {describe(error.instance)}"
    if error.validator == "enum":
        return (
            f"{where}: expected one of {', '.join(map(str, error.validator_value))}, found {describe(error.instance)}"
        )
    if error.validator in ("minimum", "minLength"):
        return f"{where}: expected {error.validator} {error.validator_value}, found {describe(error.instance)}"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


@functools.cache
def results_validators():
    """The published schema's validators, read once: any results file, and a file --merge takes."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    mergeable = {"$ref": "#/$defs/mergeable_file", "$defs": schema["$defs"]}
    return (
        jsonschema.Draft202012Validator(with_definitions_inlined(schema)),
        jsonschema.Draft202012Validator(with_definitions_inlined(mergeable)),
    )


def with_definitions_inlined(schema: dict) -> dict:
    """The schema with each `{"$ref": "#/$defs/NAME"}` replaced by that definition: the same checks
    and error paths, without jsonschema resolving a reference for every model, run and figure
    (a third of its time on a results file). The schema's references are all of this form, none
    recursive and none beside other keywords; any other stays a reference."""
    definitions = schema.get("$defs", {})

    def inlined(node):
        if isinstance(node, list):
            return [inlined(item) for item in node]
        if not isinstance(node, dict):
            return node
        target = node.get("$ref", "")
        if len(node) == 1 and target.startswith("#/$defs/") and target[8:] in definitions:
            return inlined(definitions[target[8:]])
        return {key: inlined(value) for key, value in node.items()}

    return inlined(schema)


# The schema's fast pre-check. jsonschema walks the schema anew for every value (a validator object
# and a reference lookup per keyword): most of the time to read a results file. compiled_check turns
# the schema, once, into nested functions that only answer "valid or not". It is a pre-check, never
# the judge of an error: a file it passes, jsonschema passes too; a file it fails goes to jsonschema,
# which finds the error and words it (validate_results). It knows the keywords the schema uses and
# errs towards "not valid" (types compared strictly, enums by type and value); a schema with any
# other keyword gets no pre-check (None), and every file then goes to jsonschema.
# tests/test_schema_check.py checks that both agree on valid files and on edited copies of them.
Check = Callable[[Any], bool]

ANNOTATIONS = {"$schema", "$defs", "title", "description", "examples", "$comment"}  # $id: at the top only
TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "integer": lambda value: (
        (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    ),
}


class NotCompiled(Exception):
    """A keyword or value this module does not check: the schema gets no pre-check."""


def is_number(value: Any) -> bool:
    return TYPES["number"](value)


def compiled_check(schema: dict) -> Check | None:
    """The yes/no check of `schema` (references `#/$defs/NAME` into its own $defs), or None when
    the schema uses something this module does not know."""
    try:  # an $id below the top would change what "#/$defs/..." means there: not compiled
        return compile_node({key: value for key, value in schema.items() if key != "$id"}, schema.get("$defs", {}), ())
    except NotCompiled:
        return None


def same_json_value(option: Any) -> Check:
    """An enum's or const's option matched strictly: a string by a string, null by null."""
    if option is None:
        return lambda value: value is None
    if isinstance(option, str):
        return lambda value: isinstance(value, str) and value == option
    raise NotCompiled(f"enum/const option {option!r}")


def compile_node(node: Any, definitions: dict, refs: tuple) -> Check:
    """One schema (an object or true/false) as a function of the value: the AND of its keywords."""
    if node is True or node == {}:
        return lambda value: True
    if node is False:
        return lambda value: False
    if not isinstance(node, dict):
        raise NotCompiled(f"schema {node!r}")
    compiled = [compile_keyword(key, argument, node, definitions, refs) for key, argument in node.items()]
    checks = [check for check in compiled if check is not None]
    if len(checks) == 1:
        return checks[0]

    def every_keyword(value: Any) -> bool:
        for check in checks:
            if not check(value):
                return False
        return True

    return every_keyword


def compile_keyword(key: str, argument: Any, node: dict, definitions: dict, refs: tuple) -> Check | None:
    """One keyword's check (None for annotations and for `then`, which `if` takes)."""
    if key in ANNOTATIONS or key in ("then", "else"):
        return None
    if key == "$ref":
        name = argument[len("#/$defs/") :] if isinstance(argument, str) and argument.startswith("#/$defs/") else None
        if name not in definitions or argument in refs:
            raise NotCompiled(f"$ref {argument!r}")  # elsewhere, or recursive
        return compile_node(definitions[name], definitions, (*refs, argument))
    if key == "type":
        names = [argument] if isinstance(argument, str) else argument
        if not all(name in TYPES for name in names):
            raise NotCompiled(f"type {argument!r}")
        tests = [TYPES[name] for name in names]
        return tests[0] if len(tests) == 1 else lambda value: any(test(value) for test in tests)
    if key in ("enum", "const"):
        options = [same_json_value(option) for option in (argument if key == "enum" else [argument])]
        return lambda value: any(option(value) for option in options)
    if key in ("minimum", "maximum", "minLength"):
        return bound_check(key, argument)
    if key in ("properties", "required", "additionalProperties"):
        return object_check(key, argument, node, definitions, refs)
    if key == "items":
        item = compile_node(argument, definitions, refs)

        def each_item(value: Any) -> bool:
            if isinstance(value, list):
                for one in value:
                    if not item(one):
                        return False
            return True

        return each_item
    if key == "anyOf":
        options = [compile_node(option, definitions, refs) for option in argument]
        return lambda value: any(option(value) for option in options)
    if key == "if":
        condition = compile_node(argument, definitions, refs)
        then = compile_node(node.get("then", True), definitions, refs)
        otherwise = compile_node(node.get("else", True), definitions, refs)
        return lambda value: then(value) if condition(value) else otherwise(value)
    raise NotCompiled(f"keyword {key!r}")


def bound_check(key: str, bound: Any) -> Check:
    if not is_number(bound):
        raise NotCompiled(f"{key} {bound!r}")
    if key == "minimum":
        return lambda value: not is_number(value) or value >= bound
    if key == "maximum":
        return lambda value: not is_number(value) or value <= bound
    return lambda value: not isinstance(value, str) or len(value) >= bound


def object_check(key: str, argument: Any, node: dict, definitions: dict, refs: tuple) -> Check:
    if key == "required":
        names = list(argument)
        return lambda value: not isinstance(value, dict) or all(name in value for name in names)
    if key == "properties":
        checks = [(name, compile_node(sub, definitions, refs)) for name, sub in argument.items()]

        def each_property(value: Any) -> bool:
            if isinstance(value, dict):
                for name, check in checks:
                    if name in value and not check(value[name]):
                        return False
            return True

        return each_property
    if "patternProperties" in node:
        raise NotCompiled("additionalProperties beside patternProperties")
    declared = set(node.get("properties", {}))
    extra = compile_node(argument, definitions, refs)
    return lambda value: (
        not isinstance(value, dict) or all(extra(item) for name, item in value.items() if name not in declared)
    )


@functools.cache
def results_prechecks() -> tuple[Check, Check]:
    """Fast yes/no checks of the same two schemas (compiled_check): a file they pass, jsonschema
    passes; a file they fail goes to jsonschema for its error. Without a pre-check, every file does."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    mergeable = {"$ref": "#/$defs/mergeable_file", "$defs": schema["$defs"]}
    return compiled_check(schema) or never_passes, compiled_check(mergeable) or never_passes


def never_passes(data) -> bool:
    return False


def schema_error(data, which: int):
    """jsonschema's most relevant error of the file against schema `which` (0 any file, 1 --merge's),
    None when it finds none."""
    import jsonschema

    return jsonschema.exceptions.best_match(results_validators()[which].iter_errors(data))


def validate_results(data, path: Path, option: str) -> None:
    """The file against results_schema.json, then what a schema cannot say: each model once.
    jsonschema (imported, and its validators built: a third of a second) only for a file the
    pre-check fails, to find and word the error."""
    passes_readable, passes_mergeable = results_prechecks()
    error = None if passes_readable(data) else schema_error(data, 0)
    if error is None and option == "--merge" and not passes_mergeable(data):  # every figure of a complete model
        error = schema_error(data, 1)
    if error is not None:
        if list(error.absolute_path) == ["schema"] or (error.validator == "required" and "'schema'" in error.message):
            found = data.get("schema") if isinstance(data, dict) else None
            raise UsageError(
                f"{option}: {path}: "
                + (
                    f"schema {found!r} is not one this version reads "
                    f"({', '.join(SCHEMAS_READ)}); use the version of the tool that wrote it"
                    if found
                    else "not a benchmark results file (no 'schema' and 'models'); expected a "
                    "results/benchmark_results_<run>.json file"
                )
            )
        raise UsageError(
            f"{option}: {path}: not a valid results file: {schema_error_text(error)} "
            f"(the format: vision_bench/reports/{SCHEMA_FILE.name})"
        )
    seen: dict[str, int] = {}
    for index, r in enumerate(data["models"]):  # still JSON here: model_key's figures by their keys
        key = r["cli_name"] + (f" [{r['variant']}]" if r.get("variant") else "")
        if key in seen:
            raise UsageError(
                f"{option}: {path}: {r['model']} ({key}) appears twice, at $.models[{seen[key]}] and "
                f"$.models[{index}]; a results file holds each model once"
            )
        seen[key] = index


def read_results(path: Path, option: str) -> RunDocument:
    """A results JSON of a schema this version reads, validated, or a UsageError in one line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=NotAFiniteNumber, parse_float=parse_float, parse_int=parse_int)
    except FileNotFoundError:
        raise UsageError(f"{option}: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option}: {path}: cannot read it ({exception_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option}: {path}: not JSON ({exc.msg} at line {exc.lineno}); "
            "expected a results/benchmark_results_<run>.json file"
        ) from None
    except RecursionError:
        raise UsageError(f"{option}: {path}: not a results file (nested too deeply to read)") from None
    if not isinstance(data, dict) or "schema" not in data or not isinstance(data.get("models"), list):
        raise UsageError(
            f"{option}: {path}: not a benchmark results file (no 'schema' and 'models'); "
            "expected a results/benchmark_results_<run>.json file"
        )
    validate_results(data, path, option)
    try:
        return read_document(data)
    except ValueError as exc:  # RecordError: a value the schema allows but the records cannot hold
        raise UsageError(f"{option}: {path}: not a valid results file: {exc}") from None


def model_key(r: ModelResult) -> str:
    """A model's identity across files: its CLI name, and its variant where results have variants."""
    return r.cli_name + (f" [{r.variant}]" if r.variant else "")


def timed_seconds(r: ModelResult) -> list[float]:
    """End-to-end times of the runs in the headline statistics: kind 'timed' (schema 2) and not
    discarded by --discard-throttled, or every run but the cold start (schema 1, no warm-up)."""
    runs: list[RunRecord] = r.runs or []
    return [run.total_s for run in runs if run.run_kind == RunKind.TIMED and not run.discarded]


def setting(data: RunDocument, r: ModelResult | None, where: str, name: str):
    """A model's system or run setting (`where`: "system" or "config", `name` a field of it): its
    own where a merged file keeps one, else the file's; None when not recorded."""
    if where == "system":
        return ((r.system if r else None) or data.system).value(name)
    return ((r.run_config if r else None) or data.config).value(name)
