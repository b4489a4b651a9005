"""The --compare gate: a model that did not complete in new fails it, a file the schema rejects is
exit 2 in one line, and the verdict and the gate follow the Hodges-Lehmann shift's 95% interval
(checked against brute-force enumeration and scipy)."""

import copy
import itertools
import json

import numpy as np
import pytest
from conftest import run_cli
from test_compare_and_merge import comparison_md, mergeable_model, synthetic_file, synthetic_model, tight

from vision_bench.measure.stats import interval_rank, shift_estimate, smallest_two_sided_p, u_distribution


def compare(tmp_path, base_models, new_models, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = synthetic_file(tmp_path / "base.json", base_models)
    new = synthetic_file(tmp_path / "new.json", new_models, run_id="20260101_000001")
    return run_cli("--compare", base, new, *extra, "--output-dir", tmp_path / "out")


def verdict_line(proc, name="Net") -> str:
    return next(line for line in proc.stdout.splitlines() if line.strip().startswith(f"{name} "))


# --- a model that did not complete in new -------------------------------------------------------


@pytest.mark.parametrize(
    "case, expected",
    [
        ("failed", "Net: completed in base, failed in new (WorkerDied: the worker process was killed by SIGSEGV)"),
        ("timeout", "Net: completed in base, timeout in new"),
        ("not run", "Net: completed in base, not run in new"),
        ("missing", "Net: completed in base, missing in new"),
        ("no timed runs", "Net: completed in base, no timed runs in new"),
    ],
)
def test_a_model_that_did_not_complete_in_new_fails_the_comparison(tmp_path, case, expected):
    other = synthetic_model("Other", tight(0.1))
    broken = {
        "failed": synthetic_model("Net", [], status="failed")
        | {"error": {"type": "WorkerDied", "message": "the worker process was killed by SIGSEGV"}},
        "timeout": synthetic_model("Net", [], status="timeout"),
        "not run": synthetic_model("Net", [], status="not run"),
        "no timed runs": synthetic_model("Net", []),
    }.get(case)
    new_models = [other] + ([broken] if broken else [])
    proc = compare(tmp_path, [synthetic_model("Net", tight(0.1)), other], new_models, "--fail-if-slower", "10")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert f"[ERROR] {expected} (in 20260101_000001; --allow-missing accepts it)" in out
    assert "1 model(s) completed in base and not in new" in out
    assert f"**Not completed in new:** {expected}" in comparison_md(tmp_path / "out")
    # The user can accept it explicitly; it stays in the report.
    allowed = run_cli(
        "--compare",
        tmp_path / "base.json",
        tmp_path / "new.json",
        "--allow-missing",
        "--output-dir",
        tmp_path / "allowed",
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert f"[WARNING] {expected} (allowed by --allow-missing)" in allowed.stdout + allowed.stderr
    assert f"**Not completed in new (allowed):** {expected}" in comparison_md(tmp_path / "allowed")


def test_a_model_that_failed_in_base_too_is_not_a_gate_failure(tmp_path):
    proc = compare(
        tmp_path,
        [synthetic_model("Net", [], status="failed"), synthetic_model("Other", tight(0.1))],
        [synthetic_model("Net", [], status="failed"), synthetic_model("Other", tight(0.1))],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- files the schema rejects -------------------------------------------------------------------


def audit_files(good: dict) -> dict:
    """Every malformed file of the audit, as text: name -> (content, what the error must say)."""
    text = json.dumps(good)
    cases = {}

    def edited(name, change, expected):
        data = copy.deepcopy(good)
        change(data)
        cases[name] = (json.dumps(data), expected)

    edited("no cli_name", lambda d: d["models"][0].pop("cli_name"), "$.models[0]: 'cli_name' is a required property")
    edited("no status", lambda d: d["models"][0].pop("status"), "$.models[0]: 'status' is a required property")
    edited(
        "run without total_s",
        lambda d: d["models"][0]["runs"][2].pop("total_s"),
        "$.models[0].runs[2]: 'total_s' is a required property",
    )
    edited(
        "model not an object", lambda d: d["models"].__setitem__(0, "Net"), "$.models[0]: expected object, found 'Net'"
    )
    edited("started null", lambda d: d.__setitem__("started", None), "$.started: expected string, found null")
    edited(
        "null times",
        lambda d: [r.__setitem__("total_s", None) for r in d["models"][0]["runs"]],
        "].total_s: expected number, found null",
    )
    edited(
        "negative time",
        lambda d: d["models"][0]["runs"][3].__setitem__("total_s", -0.1),
        "$.models[0].runs[3].total_s: expected minimum 0, found -0.1",
    )
    edited(
        "unknown status", lambda d: d["models"][0].__setitem__("status", "done"), "$.models[0].status: expected one of"
    )
    edited(
        "duplicate model",
        lambda d: d["models"].append(copy.deepcopy(d["models"][0])),
        "Net (net) appears twice, at $.models[0] and $.models[1]",
    )
    assert '"parameters": 2616248' in text
    cases["5,000-digit integer"] = (
        text.replace('"parameters": 2616248', '"parameters": ' + "7" * 5000),
        "$.models[0].parameters: expected integer or null, found 77777777... (5000 characters)",
    )
    nan = copy.deepcopy(good)
    for run in nan["models"][0]["runs"]:
        run["total_s"] = float("nan")
    cases["all-NaN times"] = (json.dumps(nan), "].total_s: expected number, found NaN (not a finite number)")
    cases["1e999"] = (
        text.replace(json.dumps(good["models"][0]["runs"][4]["total_s"]), "1e999", 1),
        "$.models[0].runs[4].total_s: expected number, found 1e999 (not a finite number)",
    )
    cases["Infinity"] = (
        text.replace(json.dumps(good["models"][0]["runs"][4]["total_s"]), "-Infinity", 1),
        "found -Infinity (not a finite number)",
    )
    return cases


GOOD = {
    "schema": "unified-benchmark/3",
    "run_id": "20260101_000000",
    "status": "complete",
    "started": "2026-01-01T00:00:00",
    "total_seconds": 12.5,
    "images": ["/x/a.jpg"],
    "config": {"runs_per_image": 10, "weights": "random", "device": "cpu"},
    "system": {"cpu": "x86_64"},
    "models": [mergeable_model("Net", tight(0.1))],
}


@pytest.mark.parametrize("option", ["--compare", "--merge"])
@pytest.mark.parametrize("name", list(audit_files(GOOD)))
def test_every_file_the_audit_found_is_exit_2_in_one_line(tmp_path, option, name):
    content, expected = audit_files(GOOD)[name]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD | {"models": [mergeable_model("Other", tight(0.1))]}))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = run_cli(option, good, bad, "--output-dir", tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"[ERROR] {option}: {bad}: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "out").exists(), "nothing is written for a bad input"


def test_the_published_schema_reads_every_schema_version_and_merge_asks_for_the_figures_it_shows(tmp_path):
    from vision_bench.reports.results_file import validate_results

    for schema in ("unified-benchmark/1", "unified-benchmark/2", "unified-benchmark/3"):
        validate_results(GOOD | {"schema": schema}, tmp_path / "x.json", "--compare")
    # A complete model without the figures the merged report shows is a compare input but not a merge input.
    first = synthetic_file(tmp_path / "a.json", [synthetic_model("Net", tight(0.1))], schema="unified-benchmark/3")
    second = synthetic_file(tmp_path / "b.json", [synthetic_model("Other", tight(0.1))], schema="unified-benchmark/3")
    proc = run_cli("--merge", first, second, "--output-dir", tmp_path / "m")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (
        f"--merge: {first}: not a valid results file: $.models[0]: 'weights_source' is a required property"
        in proc.stderr
    )


# --- one estimator for direction, size and significance ----------------------------------------


def test_the_u_distribution_matches_brute_force_enumeration():
    for m, n in [(1, 1), (2, 3), (4, 4), (3, 6), (6, 7)]:
        counts = np.zeros(m * n + 1)
        for first in itertools.combinations(range(m + n), m):
            rest = [v for v in range(m + n) if v not in first]
            counts[sum(1 for x in first for y in rest if x > y)] += 1
        assert u_distribution(m, n) == pytest.approx(counts / counts.sum(), abs=1e-15), (m, n)


def brute_force_shift(a, b):
    """The Hodges-Lehmann shift and its 95% interval by enumeration: every split of the pooled ranks
    gives U's null distribution; the interval's rank is the largest c with P(U <= c-1) <= 2.5%."""
    m, n = len(a), len(b)
    us = [
        sum(1 for x in first for y in range(m + n) if y not in first and x > y)
        for first in itertools.combinations(range(m + n), m)
    ]
    c = max([k for k in range(m * n + 1) if sum(u <= k - 1 for u in us) / len(us) <= 0.025] or [0])
    differences = sorted(y - x for x in a for y in b)
    return float(np.median(differences)), (differences[c - 1], differences[m * n - c]) if c else (None, None)


def test_the_shift_and_its_interval_match_brute_force_and_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    for m, n in [(6, 6), (5, 8), (7, 7), (10, 4)]:
        a, b = rng.normal(1.0, 0.1, m), rng.normal(1.1, 0.1, n)
        shift = shift_estimate(list(a), list(b))
        expected_shift, (low, high) = brute_force_shift(a, b)
        assert shift["shift"] == pytest.approx(expected_shift) and (shift["low"], shift["high"]) == (low, high)
        # The interval is the set of shifts the exact two-sided U test does not reject at 5%:
        # just outside an end scipy rejects, just inside it does not.
        eps = 1e-9
        for end, outside in ((low, low - eps), (high, high + eps)):
            inside = end + eps if end == low else end - eps
            p_out = stats.mannwhitneyu(b - outside, a, method="exact").pvalue
            p_in = stats.mannwhitneyu(b - inside, a, method="exact").pvalue
            assert p_out <= 0.05 < p_in, (m, n, end, p_out, p_in)
    # Large samples: the normal approximation's rank against scipy's normal quantile.
    c, coverage = interval_rank(150, 150)
    z = stats.norm.ppf(0.975)
    assert c == int(np.floor(150 * 150 / 2 - z * np.sqrt(150 * 150 * 301 / 12))) and coverage == 0.95


def test_a_bimodal_slowdown_is_slower_though_the_median_ratio_says_faster(tmp_path):
    """The audit's kind of example: just over half the new runs a hair faster than base's median,
    the rest ten times slower. The ratio of medians says faster; a new run is the slower one 71% of the time."""
    base = np.linspace(0.0303, 0.0323, 30)
    new = np.concatenate([np.linspace(0.03115, 0.03125, 16), np.linspace(0.280, 0.320, 14)])
    assert np.median(new) / np.median(base) < 1  # the old direction: faster
    assert np.mean(new[:, None] > base[None, :]) > 0.7  # but a new run is more often the slower one
    proc = compare(tmp_path, [synthetic_model("Net", base)], [synthetic_model("Net", new)], "--fail-if-slower", "0.5")
    line = verdict_line(proc)
    assert line.rstrip().endswith("slower") and float(line.split("[")[1].split(",")[0]) > 0.5, proc.stdout
    assert proc.returncode == 1 and "--fail-if-slower 0.5: Net" in proc.stdout + proc.stderr


def test_the_gate_fires_only_when_the_interval_shows_a_slowdown_larger_than_the_threshold(tmp_path):
    rng = np.random.default_rng(21)
    tight_base, tight_new = 0.100 * (1 + rng.uniform(-0.005, 0.005, 20)), 0.104 * (1 + rng.uniform(-0.005, 0.005, 20))
    proc = compare(
        tmp_path / "tight",
        [synthetic_model("Net", tight_base)],
        [synthetic_model("Net", tight_new)],
        "--fail-if-slower",
        "2",
    )
    line = verdict_line(proc)
    low = float(line.split("[")[1].split(",")[0])
    assert line.rstrip().endswith("slower") and low > 2 and proc.returncode == 1, proc.stdout + proc.stderr
    assert "fails the gate" in comparison_md(tmp_path / "tight" / "out")
    # The same 4% with a wide spread: significantly slower, but the data cannot rule out less than 2%.
    rng = np.random.default_rng(19)
    wide_base = 0.100 * (1 + rng.uniform(-0.05, 0.05, 40))
    wide_new = 0.104 * (1 + rng.uniform(-0.05, 0.05, 40))
    shift = shift_estimate(list(wide_base), list(wide_new))
    assert 0 < shift["low"] < 0.002, shift  # chosen so: slower, lower bound under 2% of 100 ms
    proc = compare(
        tmp_path / "wide",
        [synthetic_model("Net", wide_base)],
        [synthetic_model("Net", wide_new)],
        "--fail-if-slower",
        "2",
    )
    assert verdict_line(proc).rstrip().endswith("slower") and proc.returncode == 0, proc.stdout + proc.stderr


def test_a_significantly_faster_model_never_fails_the_gate(tmp_path):
    proc = compare(
        tmp_path,
        [synthetic_model("Net", tight(0.100, n=20, seed=1))],
        [synthetic_model("Net", tight(0.050, n=20, seed=2))],
        "--fail-if-slower",
        "0",
    )
    assert verdict_line(proc).rstrip().endswith("faster") and proc.returncode == 0, proc.stdout + proc.stderr


def test_too_few_runs_to_tell_instead_of_no_significant_change(tmp_path):
    assert smallest_two_sided_p(3, 3) == pytest.approx(0.1)
    proc = compare(
        tmp_path,
        [synthetic_model("Net", [0.10, 0.11, 0.12])],
        [synthetic_model("Net", [0.20, 0.21, 0.22])],
        "--fail-if-slower",
        "10",
    )
    line = verdict_line(proc)
    assert line.rstrip().endswith("too few runs to tell") and "smallest p 0.1" in line and proc.returncode == 0, line


def test_a_base_median_of_zero_still_gives_a_direction(tmp_path):
    proc = compare(
        tmp_path,
        [synthetic_model("Net", [0.0] * 8)],
        [synthetic_model("Net", tight(0.01, n=8))],
        "--fail-if-slower",
        "5",
    )
    line = verdict_line(proc)
    assert line.rstrip().endswith("slower") and "(base median 0)" in line and proc.returncode == 1, line


SKIPPING_TESTS = """
import pytest

def test_runs():
    assert True

def test_needs_a_missing_reference():
    pytest.importorskip("a_module_that_is_not_installed")

def test_cpu_only():
    pytest.skip("this machine has CUDA")
"""


@pytest.mark.parametrize("strict, expected_code", [("1", 1), ("", 0)])
def test_ci_fails_on_a_skip_that_is_not_allowed(tmp_path, strict, expected_code):
    """The reference test of the U test was skipped silently in CI (scipy not installed): with
    VISION_BENCH_STRICT_SKIPS=1 such a skip fails the run; an allowed reason does not."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "test_sample.py").write_text(SKIPPING_TESTS)
    tests_dir = Path(__file__).resolve().parent
    env = {**os.environ, "VISION_BENCH_STRICT_SKIPS": strict, "PYTHONPATH": str(tests_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "strict_skips",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_sample.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert proc.returncode == expected_code, proc.stdout + proc.stderr
    assert "1 passed, 2 skipped" in proc.stdout
    if strict:
        assert (
            "test_needs_a_missing_reference: Skipped: could not import 'a_module_that_is_not_installed'" in proc.stdout
        )
        assert "test_cpu_only" not in proc.stdout.split("skips not allowed")[1]


SLOW_MODELS = '''
import time

import unified_benchmark as ub


class SlowYOLO11nDetect(ub.YOLO11nDetectBenchmark):
    """yolo11n-detect with a deliberate slowdown: a sleep in every pass through the pipeline."""

    def run_pipeline(self, image):
        time.sleep(1.0)
        return super().run_pipeline(image)
'''

SLOW_RUNNER = """
import sys

import unified_benchmark as ub

if __name__ == "__main__":
    if sys.argv[1] == "slow":
        import slow_models
        ub.MODELS_BY_CLI_NAME["yolo11n-detect"] = slow_models.SlowYOLO11nDetect
    sys.exit(ub.main(sys.argv[2:]))
"""


def test_a_real_slowdown_of_yolo11n_detect_fails_the_gate_with_its_interval_shown(tmp_path, sample_image):
    """Two real runs of yolo11n-detect (random weights), the second with a 1 s sleep in its pipeline."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, load_run

    (tmp_path / "slow_models.py").write_text(SLOW_MODELS)
    (tmp_path / "run_slow.py").write_text(SLOW_RUNNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    files = {}
    for name in ("base", "slow"):
        proc = subprocess.run(
            [
                sys.executable,
                str(tmp_path / "run_slow.py"),
                name,
                "--models",
                "yolo11n-detect",
                "--weights",
                "random",
                "--no-dissect",
                "--runs",
                "8",
                "--warmup",
                "1",
                "--busy-limit",  # the gate's verdict is under test, not the machine: a loaded one would have none
                "99",
                "--images",
                str(sample_image),
                "--output-dir",
                str(tmp_path / name),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run = load_run(tmp_path / name)
        files[name] = run["results_dir"] / f"benchmark_results_{run['run_id']}.json"
    proc = run_cli(
        "--compare", files["base"], files["slow"], "--fail-if-slower", "50", "--output-dir", tmp_path / "cmp"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = verdict_line(proc, "YOLO11nDetect")
    assert line.rstrip().endswith("slower"), line
    low = float(line.split("[")[1].split(",")[0])
    assert low > 50, line
    md = comparison_md(tmp_path / "cmp")
    row = next(r for r in md.splitlines() if r.startswith("| YOLO11nDetect |"))
    assert "**slower** (fails the gate)" in row and "% [+" in row and "8 / 8" in row, row
