"""One worker process per model: a worker that dies, hangs or is interrupted costs only its own
model, with a record that says what happened; and the statistics behind the headline medians
(warm-up runs kept out, a 95% interval that holds the median and narrows with more runs)."""

import math
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from conftest import ROOT, load_run

from vision_bench.measure.stats import latency_stats, median_interval
from vision_bench.measure.timed_runs import summarize_runs
from vision_bench.records.model_result import with_records
from vision_bench.reports.findings import findings

WORKER_MODELS = ROOT / "tests" / "worker_models.py"


def run_tool(*args, timeout=300):
    """The tool's command line with the tiny test models of worker_models.py added."""
    return subprocess.run(
        [sys.executable, str(WORKER_MODELS), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("model,signal_name", [("selfkill", "SIGKILL"), ("segfault", "SIGSEGV")])
def test_a_worker_killed_by_a_signal_fails_alone(tmp_path, sample_image, model, signal_name):
    proc = run_tool(
        "--models",
        f"{model},tinyconv",
        "--weights",
        "random",
        "--runs",
        2,
        "--keep-going",
        "--no-dissect",
        "--images",
        sample_image,
        "--output-dir",
        tmp_path,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = load_run(tmp_path)
    dead, tiny = run["json"]["models"]
    assert dead["status"] == "failed" and tiny["status"] == "complete"
    assert dead["worker"]["signal"] == signal_name and dead["worker"]["exit_code"] == -getattr(signal, signal_name)
    assert dead["error"]["type"] == "WorkerDied" and signal_name in dead["error"]["message"]
    assert dead["error"]["phase"] == "warmup"  # its second run: the first warm-up run
    assert [r["kind"] for r in dead["runs"]] == ["cold"]  # what it measured before dying is kept
    assert "about to die" in "\n".join(dead["error"]["output_tail"])
    if signal_name == "SIGSEGV":  # faulthandler's report reaches the log
        assert "Segmentation fault" in "\n".join(dead["error"]["output_tail"])
    assert dead["memory"]["at_failure"]["cpu_peak_rss_bytes"] > 0
    md = run["md_path"].read_text()
    failed = md.split("## Failed or interrupted models")[1].split("\n## ")[0]
    assert dead["model"] in failed and signal_name in failed
    assert "| TinyConv | random |" in md
    assert "about to die" in proc.stdout  # the worker's output is relayed as it happens


def test_model_timeout_kills_the_worker_and_the_run_goes_on(tmp_path, sample_image):
    started = time.monotonic()
    proc = run_tool(
        "--models",
        "sleepy,tinyconv",
        "--weights",
        "random",
        "--runs",
        2,
        "--keep-going",
        "--no-dissect",
        "--model-timeout",
        5,
        "--images",
        sample_image,
        "--output-dir",
        tmp_path,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert time.monotonic() - started < 240  # the sleeper would hold the run for 10 minutes
    run = load_run(tmp_path)
    sleepy, tiny = run["json"]["models"]
    assert sleepy["status"] == "timeout" and sleepy["error"]["type"] == "Timeout"
    assert sleepy["error"]["phase"] == "cold_start" and "--model-timeout 5" in sleepy["error"]["message"]
    assert (
        not psutil.pid_exists(sleepy["worker"]["pid"])
        or psutil.Process(sleepy["worker"]["pid"]).status() == psutil.STATUS_ZOMBIE
    )
    assert tiny["status"] == "complete"
    assert "timeout" in run["md_path"].read_text()


def test_sigint_to_the_parent_stops_the_worker_and_keeps_finished_models(tmp_path, sample_image):
    log = tmp_path / "stdout.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER_MODELS),
                "--models",
                "tinyconv,sleepy",
                "--weights",
                "random",
                "--runs",
                "2",
                "--no-dissect",
                "--images",
                str(sample_image),
                "--output-dir",
                str(tmp_path / "out"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240
        while "SLEEPING" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        servers = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 130, log.read_text()[-2000:]
    run = load_run(tmp_path / "out")
    tiny, sleepy = run["json"]["models"]
    assert run["json"]["status"] == "interrupted"
    assert tiny["status"] == "complete" and sleepy["status"] == "interrupted"
    assert sleepy["phase_reached"] == "cold_start"
    # no process of the run is left behind: the worker and the fork server are gone
    deadline = time.monotonic() + 10
    alive = [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert sleepy["worker"]["pid"] in {p.pid for p in servers}
    assert not alive, [(p.pid, p.cmdline()[:3]) for p in alive]
    assert "Sleepy" in run["md_path"].read_text() and "TinyConv" in run["csv_path"].read_text()


def test_a_failure_inside_the_worker_is_reported_like_in_process(ub, tmp_path, sample_image):
    """A Python exception in the worker: the worker's own record, with the traceback, not a dead worker."""
    proc = run_tool(
        "--models",
        "tinyconv",
        "--weights",
        "pretrained",
        "--runs",
        1,
        "--images",
        sample_image,
        "--output-dir",
        tmp_path,
    )
    assert proc.returncode == 1
    model = load_run(tmp_path)["json"]["models"][0]
    assert model["status"] == "failed" and model["error"]["type"] == "WeightsError"
    assert model["error"]["phase"] == "load" and model["worker"]["exit_code"] == 0
    assert "[ERROR] TinyConv failed during load" in proc.stdout


# -- statistics ------------------------------------------------------------------------------
def test_median_interval_is_the_binomial_order_statistic_interval(ub):
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 6.0, 8.0, 10.0]
    low, high, coverage = median_interval(values)
    assert (low, high) == (2.0, 9.0)  # x(2) and x(9) of ten: P(B <= 1) = 11/1024 per side
    assert coverage == pytest.approx(1 - 2 * 11 / 1024)
    low, high, coverage = median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])
    assert (low, high) == (1.0, 6.0) and coverage == pytest.approx(1 - 2 / 64)
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # even [min, max] covers only 93.75%
    for n in range(6, 60):
        coverage = median_interval(np.arange(n, dtype=float))[2]
        assert coverage >= 0.95 and coverage < 0.995


def test_median_interval_holds_the_median_and_narrows_with_more_runs(ub):
    rng = np.random.default_rng(0)
    times = rng.lognormal(mean=math.log(0.05), sigma=0.2, size=400)
    widths = []
    for n in (10, 40, 160, 400):
        stats = latency_stats(list(times[:n]))
        assert stats.ci95_low <= stats.median <= stats.ci95_high
        widths.append(stats.ci95_high - stats.ci95_low)
    assert widths == sorted(widths, reverse=True) and widths[-1] < widths[0] / 3
    assert latency_stats([0.1, 0.2]).ci95_low is None


def test_unstable_timing_is_judged_by_the_interval_width(ub):
    def model(name, timed):
        runs = [
            {
                "image": "a.jpg",
                "image_size": [1, 1],
                "kind": "cold",
                "cold": True,
                "total_s": 1.0,
                "preprocess_s": 0,
                "forward_s": 1.0,
                "postprocess_s": 0,
            }
        ]
        runs += [
            {
                "image": "a.jpg",
                "image_size": [1, 1],
                "kind": "timed",
                "cold": False,
                "total_s": t,
                "preprocess_s": 0,
                "forward_s": t,
                "postprocess_s": 0,
            }
            for t in timed
        ]
        r = {
            "model": name,
            "status": "complete",
            "runs": runs,
            "memory": {"peak_bytes": 1, "peak_kind": "CPU"},
            "parameters": 1,
            "gflops": 1.0,
            "input_shape": [1],
        }
        result = with_records(r)
        summarize_runs(result)
        return result

    steady = model("Steady", [1.00, 1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01])
    noisy = model("Noisy", [1.0, 1.5, 0.7, 1.3, 0.8, 1.2, 1.0, 1.4])
    text = "\n".join(findings([steady, noisy]))
    assert "Unstable timing: Noisy on a.jpg" in text and "Unstable timing: Steady" not in text


@pytest.mark.parametrize(
    "args",
    [
        ["--warmup", "-1"],
        ["--model-timeout", "0"],
        ["--model-timeout", "abc"],
        ["--isolation", "threads"],
        ["--model-timeout", "5", "--isolation", "none"],
    ],
)
def test_bad_worker_options_exit_2_in_one_line(tmp_path, args):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "unified_benchmark.py"), *args, "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("[ERROR]")
    assert not (tmp_path / "out").exists()
