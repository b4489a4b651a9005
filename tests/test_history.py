"""--history: the change-point method against synthetic histories with the spread of a real run (a
10% step found at the right run, few false alarms, a single outlier not a step), every file checked
by the schema, the runs' order, a failed model as a gap, the gate's exit codes, and the commit a run
records."""

import json
import subprocess

import numpy as np
import pytest
from conftest import run_cli
from test_compare_and_merge import synthetic_file, synthetic_model, tight

from vision_bench.common import UsageError
from vision_bench.history.analysis import build_history
from vision_bench.history.change_points import find_steps, outliers
from vision_bench.measure.source_control import source_state
from vision_bench.reports.compare import REFUSED

# The 20 timed end-to-end times (seconds) of a real run here: yolo11n-detect, --runs 10 --weights random,
# 2 images, on the shared 2-core EPYC (results/benchmark_results_20261207_131554.json of issue 33's history).
REAL_TIMED_S = [
    0.11133, 0.06208, 0.05719, 0.22813, 0.04843, 0.05097, 0.05096, 0.05234, 0.05162, 0.05374,
    0.05488, 0.04877, 0.05677, 0.04656, 0.057, 0.04564, 0.04872, 0.04766, 0.0543, 0.04854,
]  # fmt: skip
HISTORIES = 200
RUNS = 30


def simulated_history(rng, step: float) -> tuple[list[float], int | None]:
    """RUNS run medians, each the median of a resample of the real run's times; from a random run
    on (6th to 26th), `step` slower. Returns the medians and the index of the first slower run."""
    first_after = int(rng.integers(5, 26)) if step else None
    medians = []
    for i in range(RUNS):
        factor = 1.0 + step if first_after is not None and i >= first_after else 1.0
        medians.append(float(np.median(rng.choice(REAL_TIMED_S, len(REAL_TIMED_S)))) * factor)
    return medians, first_after


def steps_at(medians: list[float]) -> list[int]:
    """The runs (indices into medians) where steps were found, outliers left out as --history does."""
    flags = outliers(medians)
    kept = [i for i, flagged in enumerate(flags) if not flagged]
    return [kept[s.index] for s in find_steps([medians[i] for i in kept])]


def test_a_ten_percent_step_is_found_at_its_run_in_95_percent_of_histories():
    rng = np.random.default_rng(33)
    found = 0
    for _ in range(HISTORIES):
        medians, first_after = simulated_history(rng, 0.10)
        found += any(abs(at - first_after) <= 1 for at in steps_at(medians))
    assert found >= 0.95 * HISTORIES, f"found at the right run (within one) in {found} of {HISTORIES}"


def test_histories_without_a_step_raise_a_false_alarm_in_at_most_5_percent():
    rng = np.random.default_rng(34)
    alarms = sum(bool(steps_at(simulated_history(rng, 0.0)[0])) for _ in range(HISTORIES))
    assert alarms <= 0.05 * HISTORIES, f"a step found in {alarms} of {HISTORIES} histories without one"


def test_one_run_twice_as_slow_is_an_outlier_not_a_step_and_the_real_step_is_found():
    rng = np.random.default_rng(35)
    medians = [float(np.median(rng.choice(REAL_TIMED_S, 20))) for _ in range(12)]
    medians = [m * (1.2 if i >= 6 else 1.0) for i, m in enumerate(medians)]
    medians[3] *= 2.0
    assert outliers(medians) == [i == 3 for i in range(12)]
    assert steps_at(medians) == [6]


def history_files(tmp_path, medians_ms: list[float], statuses=None) -> list:
    """One results file per run, a model 'Net' timed tightly around each median."""
    paths = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, median in enumerate(medians_ms):
        status = (statuses or {}).get(i, "complete")
        model = synthetic_model(
            "Net", [] if status != "complete" else tight(median / 1000, n=10, seed=i), status=status
        )
        data_path = synthetic_file(
            tmp_path / f"benchmark_results_{i:02d}.json", [model], run_id=f"20260101_0000{i:02d}"
        )
        data = json.loads(data_path.read_text())
        data["started"] = f"2026-01-01T00:{i:02d}:00"
        data_path.write_text(json.dumps(data))
        paths.append(data_path)
    return paths


def test_a_failed_model_is_a_gap_not_a_zero(tmp_path):
    history_files(tmp_path, [100.0] * 8, statuses={4: "failed"})
    history = build_history([tmp_path], "start")
    [series] = history.series
    gap = series.points[4]
    assert gap.status == "failed" and gap.median_s is None and gap.timed_runs == 0
    assert all(p.median_s == pytest.approx(0.1, rel=0.02) for i, p in enumerate(series.points) if i != 4)
    assert not series.change_points


def test_runs_are_ordered_by_start_label_or_commit_date(tmp_path):
    paths = history_files(tmp_path, [100.0, 101.0, 99.0])
    for path, label, committed in zip(paths, ["c", "a", "b"], ["2026-01-03", "2026-01-01", "2026-01-02"]):
        data = json.loads(path.read_text())
        data["label"] = label
        data["source"] = [{"role": "working folder", "folder": "/x", "commit": label * 7, "committed": committed}]
        path.write_text(json.dumps(data))
    names = lambda order: [run.file.rsplit("/", 1)[1] for run in build_history([tmp_path], order).runs]
    assert names("start") == ["benchmark_results_00.json", "benchmark_results_01.json", "benchmark_results_02.json"]
    assert names("label") == ["benchmark_results_01.json", "benchmark_results_02.json", "benchmark_results_00.json"]
    assert names("commit-date") == [
        "benchmark_results_01.json",
        "benchmark_results_02.json",
        "benchmark_results_00.json",
    ]


def test_every_file_is_checked_by_the_schema(tmp_path):
    paths = history_files(tmp_path, [100.0] * 4)
    data = json.loads(paths[2].read_text())
    data["models"][0]["status"] = "fine"
    paths[2].write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"--history: .*benchmark_results_02.json: not a valid results file"):
        build_history([tmp_path], "start")
    proc = run_cli("--history", tmp_path, "--output-dir", tmp_path / "out")
    assert proc.returncode == 2 and "benchmark_results_02.json" in proc.stderr and "Traceback" not in proc.stderr


def test_the_gate_fails_on_a_newest_step_larger_than_the_threshold(tmp_path):
    """Exit codes as --compare's: 1 when the newest step's interval is above the threshold, 0 when not."""
    history_files(tmp_path / "runs", [100.0] * 6 + [130.0] * 6)
    failed = run_cli("--history", tmp_path / "runs", "--fail-if-slower", "10", "--output-dir", tmp_path / "a")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert (
        "at run 7 (after run 6)" in failed.stdout
        and "[ERROR] --fail-if-slower 10: net" in failed.stdout + failed.stderr
    )
    passed = run_cli("--history", tmp_path / "runs", "--fail-if-slower", "50", "--output-dir", tmp_path / "b")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    [report] = (tmp_path / "b" / "results").glob("history_*.json")
    written = json.loads(report.read_text())
    assert [c["after"] for c in written["change_points"]] == [7]
    html = next((tmp_path / "b" / "results").glob("history_*.html")).read_text()
    assert "<svg" in html and "<title>run 7" in html


def test_a_run_records_its_commit_and_whether_the_tree_was_dirty(tmp_path):
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    clean = source_state(tmp_path, "working folder")
    assert clean is not None and clean.dirty is False and clean.subject == "first" and len(clean.commit) == 40
    (tmp_path / "a.txt").write_text("2")
    (tmp_path / "untracked.json").write_text("{}")
    assert source_state(tmp_path, "working folder").dirty is True


def test_each_variant_is_a_series_of_its_own(tmp_path):
    paths = history_files(tmp_path, [100.0] * 3)
    for i, path in enumerate(paths):
        data = json.loads(path.read_text())
        timed = [{"image": "a.jpg", "kind": "timed", "cold": False, "total_s": float(t)} for t in tight(0.05, seed=i)]
        data["models"][0]["variants"] = [
            {"variant": "torch-fp32", "status": "complete", "reference": True},
            {"variant": "torch-bf16", "status": "complete", "runs": timed},
        ]
        path.write_text(json.dumps(data))
    history = build_history([tmp_path], "start")
    assert [s.key for s in history.series] == ["net", "net [torch-bf16]"]
    assert [p.median_s for p in history.series[1].points] == pytest.approx([0.05] * 3, rel=0.02)


def test_a_library_change_is_shown_where_it_happened_beside_the_step(tmp_path):
    paths = history_files(tmp_path, [100.0] * 5 + [125.0] * 5)
    for path in paths[5:]:
        data = json.loads(path.read_text())
        data["system"]["torch"] = "2.15.0"
        path.write_text(json.dumps(data))
    history = build_history([tmp_path], "start")
    assert [(c.run, c.text()) for c in history.library_changes] == [(6, "torch 2.14.1 -> 2.15.0")]
    [step] = history.change_points
    assert (step.before, step.after, step.library_change) == (5, 6, ["torch 2.14.1 -> 2.15.0"])
    assert step.low_pct is not None and step.low_pct < 25 < step.high_pct


def test_the_gate_refuses_a_newest_run_flagged_busy_or_throttled_as_compare_does(tmp_path):
    paths = history_files(tmp_path / "runs", [100.0] * 6)
    data = json.loads(paths[-1].read_text())
    data["models"][0]["runs"][3]["state"] = {"flags": ["busy"], "load1": 3.0, "involuntary_switches": 9}
    paths[-1].write_text(json.dumps(data))
    [point] = [s.points[-1] for s in build_history([tmp_path / "runs"], "start").series]
    assert point.flagged
    refused = run_cli("--history", tmp_path / "runs", "--fail-if-slower", "10", "--output-dir", tmp_path / "a")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        f"[ERROR] --fail-if-slower 10: net: the gate cannot judge it, {REFUSED} (newest run 6) in 20260101_000005 "
        "(rerun on a quiet machine, or --discard-throttled)" in refused.stdout + refused.stderr
    )
    data["models"][0]["runs"][3]["discarded"] = True  # --discard-throttled left it out: the rest can be judged
    paths[-1].write_text(json.dumps(data))
    judged = run_cli("--history", tmp_path / "runs", "--fail-if-slower", "10", "--output-dir", tmp_path / "b")
    assert judged.returncode == 0, judged.stdout + judged.stderr


def test_the_gate_fails_on_a_model_that_completed_before_and_not_in_the_newest_run_unless_allowed(tmp_path):
    """As --compare with the run before the newest as its base: exit 1, or a warning with --allow-missing."""
    history_files(tmp_path / "runs", [100.0] * 6, statuses={5: "failed"})
    gated = run_cli("--history", tmp_path / "runs", "--fail-if-slower", "10", "--output-dir", tmp_path / "a")
    assert gated.returncode == 1, gated.stdout + gated.stderr
    assert (
        "[ERROR] net: completed in run 5, failed in the newest run (6) (in 20260101_000005; --allow-missing accepts it)"
        in gated.stdout + gated.stderr
    )
    allowed = run_cli(
        "--history", tmp_path / "runs", "--fail-if-slower", "10", "--allow-missing", "--output-dir", tmp_path / "b"
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "(allowed by --allow-missing)" in allowed.stdout + allowed.stderr
    assert run_cli("--history", tmp_path / "runs", "--output-dir", tmp_path / "c").returncode == 0
