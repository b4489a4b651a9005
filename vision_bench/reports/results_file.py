"""The results file: its schema name, its file names, the run's time accounting, and reading it
back (--compare, --merge) with the accessors that know its older layouts."""
from __future__ import annotations

import json
from pathlib import Path

from ..common import UsageError, exception_line


def report_paths(ctx) -> dict:
    return {"json": ctx.results_dir / f"benchmark_results_{ctx.run_id}.json",
            "csv": ctx.results_dir / f"benchmark_summary_{ctx.run_id}.csv",
            "md": ctx.results_dir / f"benchmark_report_{ctx.run_id}.md",
            "html": ctx.results_dir / f"benchmark_report_{ctx.run_id}.html"}


RESULTS_SCHEMA = "unified-benchmark/3"   # 3: per-model "variants" (--variants); optional per-model "trace" (--trace)
# The phases that measure something; the rest of the wall time is the tool's own overhead.
MEASURING_PHASES = ("load", "cold_start", "warmup", "timed", "flops", "time_breakdown", "trace", "dissection",
                    "variants")


def phase_totals(results: list[dict], total_seconds: float) -> dict:
    """Wall seconds per phase summed over the models, and the overhead: wall time minus the
    measuring phases (worker start, output pictures, cleanup, reports, start-up)."""
    totals: dict[str, float] = {}
    for r in results:
        for name, seconds in (r.get("phase_seconds") or {}).items():
            if seconds is not None:
                totals[name] = totals.get(name, 0.0) + seconds
    measured = sum(totals.get(name, 0.0) for name in MEASURING_PHASES)
    return {**totals, "wall": total_seconds, "measuring": measured, "overhead": max(total_seconds - measured, 0.0)}


SCHEMAS_READ = ("unified-benchmark/1", "unified-benchmark/2", RESULTS_SCHEMA)  # earlier layouts are still read


def read_results(path: Path, option: str) -> dict:
    """A results JSON of a schema this version reads, or a UsageError in one line."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{option}: {path}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option}: {path}: cannot read it ({exception_line(exc)})")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: {path}: not JSON ({exc.msg} at line {exc.lineno}); "
                         "expected a results/benchmark_results_<run>.json file")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema is None or not isinstance(data.get("models"), list):
        raise UsageError(f"{option}: {path}: not a benchmark results file (no 'schema' and 'models'); "
                         "expected a results/benchmark_results_<run>.json file")
    if schema not in SCHEMAS_READ:
        raise UsageError(f"{option}: {path}: schema {schema!r} is not one this version reads "
                         f"({', '.join(SCHEMAS_READ)}); use the version of the tool that wrote it")
    return data


def model_key(r: dict) -> str:
    """A model's identity across files: its CLI name, and its variant where results have variants."""
    return r["cli_name"] + (f" [{r['variant']}]" if r.get("variant") else "")


def timed_seconds(r: dict) -> list[float]:
    """End-to-end times of the runs in the headline statistics: kind 'timed' (schema 2), or every
    run but the cold start (schema 1, which had no warm-up)."""
    runs = r.get("runs") or []
    if any("kind" in run for run in runs):
        return [run["total_s"] for run in runs if run.get("kind") == "timed"]
    return [run["total_s"] for run in runs if not run.get("cold")]


def setting(data: dict, r: dict | None, where: str, key: str):
    """A model's system or run setting: its own where a merged file keeps one, else the file's."""
    own = (r or {}).get("system" if where == "system" else "run_config")
    return (own or data.get(where) or {}).get(key)
