"""Command line surface, the add-a-model example (docs/adding-a-model.md), and the report's computed parts."""

import re

import pytest
from conftest import ROOT, load_run, run_cli

from vision_bench.measure.stats import latency_stats
from vision_bench.records.model_result import with_records
from vision_bench.reports.findings import findings


def test_help_explains_every_option():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for option in (
        "--models",
        "--list-models",
        "--runs",
        "--images",
        "--device",
        "--weights",
        "--output-dir",
        "--no-dissect",
        "--seed",
        "--sam-prompt",
        "--keep-going",
        "--models-dir",
        "--threads",
        "--shard",
        "--shard-logs",
        "--batch-sizes",
        "--input-sizes",
        "--sweep-budget",
        "--memory-limit",
    ):
        assert option in proc.stdout


def test_list_models_prints_eight_with_descriptions(ub):
    proc = run_cli("--list-models")
    assert proc.returncode == 0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == list(ub.MODELS_BY_CLI_NAME)
    assert len(lines) == 8 and all(len(line.split()) > 3 for line in lines)


def test_readme_add_a_model_example_runs_unchanged(ub, tmp_path, sample_image, monkeypatch):
    """The manual's subclass (docs/adding-a-model.md) is the whole change needed for a ninth model."""
    manual = (ROOT / "docs" / "adding-a-model.md").read_text()
    code = re.search(r"```python\n(.*?)```", manual, re.S).group(1)
    namespace = dict(vars(ub))
    exec(code, namespace)
    cls = namespace["ResNet50Benchmark"]
    assert len(code.strip().splitlines()) <= 40
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, cls.CLI_NAME, cls)
    code_ = ub.main(
        [
            "--models",
            "resnet50",
            "--weights",
            "random",
            "--runs",
            "2",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
            "--isolation",
            "none",
        ]
    )
    assert code_ == 0
    model = load_run(tmp_path)["json"]["models"][0]
    assert model["status"] == "complete" and model["parameters"] == 25_557_032
    assert model["input_shape"] == [1, 3, 224, 224]
    assert model["dissection"]["records"] >= 150 and 7 < model["gflops"] < 9


def make_result(name, median, spread=0.02, cold=None, params=1e6, peak=100e6, gflops=1.0, new_shape_first=None):
    # `spread`: the 95% interval of each image's median is median * (1 -/+ spread)
    steady = {
        "n": 6,
        "median": median,
        "ci95_low": median * (1 - spread),
        "ci95_high": median * (1 + spread),
        "cov": spread,
        "min": median * 0.9,
        "max": median * 1.1,
    }
    per_image = {
        "a.jpg": {
            "image_size": [8, 8],
            "first_run_s": cold or median * 1.5,
            "first_is_cold_start": True,
            "steady": steady,
        },
        "b.jpg": {
            "image_size": [16, 8],
            "first_run_s": new_shape_first or median,
            "first_is_cold_start": False,
            "steady": steady,
        },
    }
    return {
        "model": name,
        "status": "complete",
        "parameters": int(params),
        "gflops": gflops,
        "input_shape": [1, 3, 8, 8],
        "fps": 1 / median,
        "cold_start": {"image": "a.jpg", "total_s": cold or median * 1.5},
        # across images the spread is large: different input sizes, not noise
        "latency_end_to_end": {
            "n": 12,
            "median": median,
            "ci95_low": median * 0.5,
            "ci95_high": median * 2,
            "cov": 0.4,
            "min": median * 0.5,
            "max": median * 2,
        },
        "latency_per_image": per_image,
        "memory": {"peak_bytes": peak, "peak_kind": "CPU peak resident set (process)"},
    }


def test_findings_come_from_the_numbers(ub):
    found = findings(
        [
            with_records(make_result("A", 0.010, params=2e6, peak=50e6)),
            with_records(
                make_result("B", 0.100, spread=0.25, cold=1.0, params=9e6, peak=900e6, gflops=80.0, new_shape_first=0.2)
            ),
        ]
    )
    text = "\n".join(found)
    assert "Fastest: A, 10.0 ms" in text and "Slowest: B, 100.0 ms" in text and "10.0x the fastest" in text
    assert "Most memory: B" in text and "Largest: B, 9.0 M parameters" in text
    assert "Unstable timing: B on a.jpg: median 100.0 ms, 95% interval [75.0, 125.0] ms, 50% of the median wide" in text
    assert "Unstable timing: A" not in text  # A varies across input sizes only, steady within each image
    assert "Cold start: B first run 1000.0 ms, 10.0x" in text and "Cold start: A" not in text
    assert (
        "New input shape: B's first run on b.jpg took 2.00x its timed median" in text
        and "New input shape: A" not in text
    )


def test_unstable_timing_can_fire_at_the_default_five_runs_an_image(ub):
    """5 runs an image have no 95% interval; their range is a 93.8% interval of the median."""
    noisy, quiet = make_result("Noisy", 0.100), make_result("Quiet", 0.010)
    for result, spread in ((noisy, 0.15), (quiet, 0.05)):
        for img in result["latency_per_image"].values():
            m = img["steady"]["median"]
            img["steady"] = {
                "n": 5,
                "median": m,
                "ci95_low": None,
                "ci95_high": None,
                "cov": spread,
                "min": m * (1 - spread),
                "max": m * (1 + spread),
            }
    text = "\n".join(findings([with_records(noisy), with_records(quiet)]))
    assert (
        "Unstable timing: Noisy on a.jpg: median 100.0 ms, range of its runs (a 93.8% interval) [85.0, 115.0] ms, "
        "30% of the median wide over 5 timed runs" in text
    )
    assert "Unstable timing: Quiet" not in text


def test_findings_say_nothing_without_data(ub):
    assert findings([with_records(make_result("A", 0.01))]) == []
    assert findings([]) == []


def test_latency_stats(ub):
    stats = latency_stats([0.1, 0.2, 0.3, 0.4])
    assert stats.n == 4 and stats.median == pytest.approx(0.25)
    assert stats.cov == pytest.approx(stats.std / stats.mean)
    assert latency_stats([]).median is None and latency_stats([]).n == 0
    one = latency_stats([0.5])  # one run: no spread to report (the README promises null)
    assert one.std is None and one.cov is None and one.median == 0.5
