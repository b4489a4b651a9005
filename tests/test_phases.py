"""The phase registry: every phase the code times is declared once, an undeclared one is refused,
and the run-time table and the overhead figure read the registry (the --divergence passes are
measuring time with a row of their own, not the tool's overhead)."""

import ast
from pathlib import Path

import pytest

from vision_bench.phases import MEASURING_PHASES, PHASES, PHASES_BY_NAME, UnregisteredPhase
from vision_bench.records.model_result import with_records
from vision_bench.reports.render_markdown import render_markdown
from vision_bench.reports.results_file import phase_totals
from vision_bench.reports.run_time import run_time_blocks
from vision_bench.run.model_pass import PhaseTimer

PACKAGE = Path(__file__).resolve().parents[1] / "vision_bench"


def phase_names_in_code() -> set[str]:
    """Every string literal passed to a call of `phase(...)` and every literal key written into
    `phase_seconds` (the worker's start) anywhere in the package."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "phase":
                names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "seconds":
                if isinstance(node.slice, ast.Constant):
                    names.add(node.slice.value)
    return names


def test_every_phase_the_code_times_is_registered():
    used = phase_names_in_code()
    assert {"load", "timed", "divergence", "worker_start", "cleanup"} <= used, used  # the scan sees them
    assert used <= set(PHASES_BY_NAME), used - set(PHASES_BY_NAME)
    assert len(PHASES_BY_NAME) == len(PHASES)  # each declared once


def test_an_unregistered_phase_is_refused():
    timer = PhaseTimer(with_records({"phase_seconds": {}}), publish=lambda result: None)
    with pytest.raises(UnregisteredPhase, match="not declared"):
        with timer("divergance"):
            pass
    with timer("divergence"):
        pass


def test_divergence_passes_are_measuring_time_with_their_own_row():
    assert "divergence" in MEASURING_PHASES
    result = {"model": "m", "phase_seconds": {"load": 2.0, "timed": 3.0, "divergence": 60.0, "cleanup": 1.0}}
    totals = phase_totals([with_records(result)], total_seconds=70.0)
    assert totals.measuring == pytest.approx(65.0)
    assert totals.overhead == pytest.approx(5.0)  # 70 - 65: the cleanup and the rest, not the passes
    text = render_markdown(run_time_blocks(totals))
    assert "| divergence passes | 60.0 | 85.7% |" in text
    assert "overhead (everything else: worker start, output picture, cleanup, reports, start-up) 5.0 s (7.1%)" in text
