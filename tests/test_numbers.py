"""The numbers themselves: timing statistics against numpy and against hand-built runs, the
peak-memory tracker against a known allocation, memory figures across the three reports,
thread pinning, and the time breakdown against blocks of known length."""

import csv
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import SCRIPT, load_run, run_cli, summarized
from PIL import Image
from torch import nn

from vision_bench.common import leaf_modules
from vision_bench.inspect.time_breakdown import TimeBreakdown
from vision_bench.measure.stats import latency_stats
from vision_bench.models.base import ModelBenchmark

MB = 1024**2


# =========================================================================================
# Timing statistics
# =========================================================================================
def test_latency_stats_by_hand(ub):
    """Values worked out on paper: p10/p90 by linear interpolation (numpy's default), the
    sample standard deviation (n - 1), CoV = std / mean."""
    s = latency_stats([1.0, 10.0, 3.0, 2.0, 4.0])  # order must not matter
    assert s.n == 5
    assert s.median == pytest.approx(3.0)
    assert s.p10 == pytest.approx(1.4)  # 1 + 0.4 * (2 - 1)
    assert s.p90 == pytest.approx(7.6)  # 4 + 0.6 * (10 - 4)
    assert s.mean == pytest.approx(4.0)
    assert s.std == pytest.approx(math.sqrt(50 / 4))  # squared deviations 9+4+1+0+36, n - 1 = 4
    assert s.cov == pytest.approx(math.sqrt(12.5) / 4)
    assert s.min == 1.0 and s.max == 10.0


def test_latency_stats_against_numpy(ub):
    rng = np.random.default_rng(7)
    for size in (2, 3, 8, 57):
        data = list(rng.lognormal(mean=-3, sigma=0.6, size=size))  # skewed, like real latencies
        a = np.asarray(data)
        s = latency_stats(data)
        assert s.n == size
        assert s.median == pytest.approx(np.median(a), rel=1e-12)
        assert s.p10 == pytest.approx(np.percentile(a, 10), rel=1e-12)
        assert s.p90 == pytest.approx(np.percentile(a, 90), rel=1e-12)
        assert s.mean == pytest.approx(a.mean(), rel=1e-12)
        assert s.std == pytest.approx(a.std(ddof=1), rel=1e-12)
        assert s.cov == pytest.approx(a.std(ddof=1) / a.mean(), rel=1e-12)
        assert s.min == a.min() and s.max == a.max()
        assert s.p10 < s.median < s.p90 or size == 2


def test_latency_stats_empty_and_single(ub):
    empty = latency_stats([])
    assert empty.n == 0
    for key in ("median", "p10", "p90", "mean", "std", "min", "max", "cov"):
        assert getattr(empty, key) is None, key
    one = latency_stats([0.25])
    assert one.n == 1 and one.median == one.p10 == one.p90 == one.min == one.max == 0.25
    assert one.std is None and one.cov is None  # one run has no spread (null in the JSON)


def make_run(image, size, run, total, pre, fwd, post, cold=False, kind=None):
    r = {
        "image": image,
        "image_size": size,
        "run": run,
        "cold": cold,
        "total_s": total,
        "preprocess_s": pre,
        "forward_s": fwd,
        "postprocess_s": post,
    }
    if kind is not None:
        r["kind"] = kind
    return r


def expected_stats(values):
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": a.size,
        "median": np.median(a),
        "p10": np.percentile(a, 10),
        "p90": np.percentile(a, 90),
        "mean": a.mean(),
        "std": a.std(ddof=1),
        "min": a.min(),
        "max": a.max(),
        "cov": a.std(ddof=1) / a.mean(),
    }


def assert_stats(actual, values):
    for key, value in expected_stats(values).items():
        assert actual[key] == pytest.approx(value, rel=1e-12), key


# Runs carry "kind" (cold / warmup / timed); warm-up rounds are kept in the JSON but left out
# of every statistic.
def test_summarize_runs_leaves_warmup_runs_out(ub):
    runs = [
        make_run("a.jpg", [64, 48], 1, 2.000, 0.100, 1.800, 0.100, cold=True, kind="cold"),
        # one warm-up round over both images: slow, and must not move any figure
        make_run("a.jpg", [64, 48], 1, 0.900, 0.300, 0.500, 0.100, kind="warmup"),
        make_run("b.jpg", [96, 32], 1, 0.800, 0.300, 0.400, 0.100, kind="warmup"),
        make_run("a.jpg", [64, 48], 1, 0.110, 0.010, 0.090, 0.010, kind="timed"),
        make_run("a.jpg", [64, 48], 2, 0.130, 0.012, 0.100, 0.018, kind="timed"),
        make_run("a.jpg", [64, 48], 3, 0.120, 0.011, 0.095, 0.014, kind="timed"),
        make_run("b.jpg", [96, 32], 1, 0.150, 0.015, 0.120, 0.015, kind="timed"),
        make_run("b.jpg", [96, 32], 2, 0.170, 0.016, 0.140, 0.014, kind="timed"),
        make_run("b.jpg", [96, 32], 3, 0.160, 0.017, 0.130, 0.013, kind="timed"),
    ]
    result = summarized({"runs": [dict(r) for r in runs]})
    timed = [r for r in runs if r["kind"] == "timed"]

    assert result["cold_start"]["total_s"] == 2.000
    assert result["latency_end_to_end"]["n"] == 6
    for key in ("median", "p10", "p90", "mean", "std", "min", "max"):
        assert result["latency_end_to_end"][key] == pytest.approx(expected_stats([r["total_s"] for r in timed])[key])
        assert result["latency_forward"][key] == pytest.approx(expected_stats([r["forward_s"] for r in timed])[key])
    assert result["latency_end_to_end"]["max"] == pytest.approx(0.170)  # the 0.9 s warm-up is not in it
    for phase in ("preprocess", "forward", "postprocess"):
        assert result["latency_phases_median"][phase] == pytest.approx(np.median([r[f"{phase}_s"] for r in timed]))
    assert result["fps"] == pytest.approx(1 / np.median([r["total_s"] for r in timed]))
    for name in ("a.jpg", "b.jpg"):
        steady = result["latency_per_image"][name]["steady"]
        mine = [r["total_s"] for r in timed if r["image"] == name]
        assert steady["max"] <= max(mine) + 1e-12, f"{name}: a warm-up run is in the steady statistics"
        assert steady["median"] == pytest.approx(np.median(mine[-steady["n"] :]))


# =========================================================================================
# One real CLI run (cheap: one YOLO model, three runs, a small image), read from every side
# =========================================================================================
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, sample_image):
    folder = tmp_path_factory.mktemp("numbers")
    image = folder / "small.jpg"
    with Image.open(sample_image) as im:
        im.resize((96, 128)).save(image, quality=90)
    out = folder / "out"
    # torch would start with 3 threads (importing ultralytics in this process set OMP_NUM_THREADS=1,
    # which the child would inherit): --threads 1 must be what brings it down to one.
    proc = run_cli(
        "--weights",
        "random",
        "--models",
        "yolo11n-detect",
        "--runs",
        3,
        "--threads",
        1,
        "--no-dissect",
        "--device",
        "cpu",
        "--images",
        image,
        "--output-dir",
        out,
        env={"OMP_NUM_THREADS": "3"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return load_run(out)


def test_end_to_end_covers_its_phases_in_every_run(cli_run):
    models = cli_run["json"]["models"]
    assert models and all(len(m["runs"]) >= 3 for m in models)
    for m in models:
        for r in m["runs"]:
            phases = r["preprocess_s"] + r["forward_s"] + r["postprocess_s"]
            assert min(r["preprocess_s"], r["forward_s"], r["postprocess_s"]) >= 0, r
            assert r["total_s"] >= phases, f"{m['model']} run {r['run']}: end to end {r['total_s']} < phases {phases}"
        # and the headline statistics are those of these runs
        timed = [r for r in m["runs"] if r.get("kind", "cold" if r["cold"] else "timed") == "timed"]
        assert m["latency_end_to_end"]["median"] == pytest.approx(np.median([r["total_s"] for r in timed]))


def cells(markdown_row: str) -> list[str]:
    return [c.strip() for c in markdown_row.strip().strip("|").split("|")]


def test_memory_figures_agree_across_json_csv_markdown(cli_run):
    with open(cli_run["csv_path"], newline="") as f:
        rows = {row["cli_name"]: row for row in csv.DictReader(f)}
    md = cli_run["md_path"].read_text()
    for m in cli_run["json"]["models"]:
        mem = m["memory"]
        assert mem["peak_bytes"] == mem["cpu_peak_rss_bytes"] > 0
        # The model's own share is its private memory's growth, not the resident set's (which counts
        # library pages the worker touched for the first time).
        assert mem["own_share_kind"] == "private memory (USS) growth"
        assert mem["peak_over_baseline_bytes"] == mem["cpu_private_peak_bytes"] - mem["cpu_private_before_load_bytes"]
        assert mem["rss_over_baseline_bytes"] == mem["peak_bytes"] - mem["cpu_rss_before_load_bytes"]
        assert mem["peak_over_baseline_bytes"] > 0
        row = rows[m["cli_name"]]
        assert float(row["peak_memory_mb"]) == pytest.approx(mem["peak_bytes"] / MB, rel=1e-9)
        assert float(row["peak_over_baseline_mb"]) == pytest.approx(mem["peak_over_baseline_bytes"] / MB, rel=1e-9)
        header = cells(next(line for line in md.splitlines() if line.startswith("| model | weights |")))
        column = next(i for i, name in enumerate(header) if name.startswith("peak memory MB"))
        cell = cells(next(line for line in md.splitlines() if line.startswith(f"| {m['model']} |")))[column]
        assert cell == f"{mem['peak_bytes'] / MB:.0f} (+{mem['peak_over_baseline_bytes'] / MB:.0f})"


def test_threads_one_is_used_everywhere(cli_run):
    data = cli_run["json"]
    assert data["config"]["torch_threads"] == 1
    assert data["system"]["torch_threads"] == 1
    assert [m["torch_threads"] for m in data["models"]] == [1] * len(data["models"])
    assert "torch threads 1" in cli_run["md_path"].read_text()


# =========================================================================================
# Peak memory: a known allocation, measured in a fresh process
# =========================================================================================
MEMORY_PROBE = r"""
import gc, importlib.util, json, sys, time
import numpy as np
import torch
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[1]).parent))
from vision_bench.measure.memory import MemoryTracker
tracker = MemoryTracker(torch.device("cpu"))
if sys.argv[2] == "sampler":          # the path taken where the kernel's high-water mark is unavailable
    tracker._read_hwm = lambda: None
tracker.reset_peak()
before = tracker.rss()
block = np.empty(300 * 1024 ** 2 // 8)
block[:] = 1.5                        # written to: every page is resident
time.sleep(0.1)                       # a sampler gets several looks at it
during = tracker.rss()
del block
gc.collect()
after = tracker.rss()
first_peak = tracker.peak_reading().cpu_peak_rss_bytes
tracker.reset_peak()
second_peak = tracker.peak_reading().cpu_peak_rss_bytes
tracker.stop_sampling()
print(json.dumps({"before": before, "during": during, "after": after, "first_peak": first_peak,
                  "second_peak": second_peak, "exact": tracker._hwm_exact}))
"""


@pytest.mark.parametrize("mode", ["kernel", "sampler"])
def test_memory_tracker_sees_a_freed_300_mb_peak(mode):
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(SCRIPT), mode], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    if mode == "kernel" and not m["exact"]:
        pytest.skip("no resettable kernel high-water mark here (not Linux, or /proc/self/clear_refs refused)")
    assert m["during"] - m["before"] >= 280 * MB, m  # the allocation really was resident
    assert m["after"] < m["during"] - 280 * MB, m  # and was given back
    assert m["first_peak"] - m["before"] >= 280 * MB, m  # the peak saw it although it is gone
    assert m["second_peak"] < m["first_peak"] - 280 * MB, m  # a new window starts from now


# =========================================================================================
# Threads: the pinned count survives a YOLO model (whose predict would set cores - 1)
# =========================================================================================
class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def tiny_benchmark_class(ub):
    class TinyBenchmark(ModelBenchmark):
        MODEL_NAME, CLI_NAME, TASK, INPUT_SIZE = "TinyNet", "tinynet", "test", 16

        def load_pretrained(self):
            raise AssertionError("random weights only")

        def load_random(self):
            self.model = TinyNet().eval()
            return "random (test)"

        def network(self):
            return self.model

        def preprocess(self, image):
            return torch.zeros(1, 3, 16, 16)

        def forward(self, inputs):
            return self.model(inputs)

        def postprocess(self, outputs, image):
            return outputs

    return TinyBenchmark


@pytest.fixture
def restore_threads():
    from ultralytics.utils import torch_utils

    threads, yolo_threads = torch.get_num_threads(), torch_utils.NUM_THREADS
    yield
    torch.set_num_threads(threads)
    torch_utils.NUM_THREADS = yolo_threads


def thread_counts_to_test():
    from ultralytics.utils import NUM_THREADS

    # One above ultralytics' own choice (cores - 1): a count it would overwrite if it could.
    return [1, NUM_THREADS + 1]


@pytest.mark.parametrize("threads", thread_counts_to_test())
def test_pinned_threads_hold_for_every_model(ub, tmp_path, sample_image, monkeypatch, restore_threads, threads):
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "tinynet", tiny_benchmark_class(ub))
    torch.set_num_threads(threads + 1)  # the tool must set the count, not find it already set
    image = tmp_path / "small.jpg"
    with Image.open(sample_image) as im:
        im.resize((64, 48)).save(image)
    code = ub.main(
        [
            "--isolation",
            "none",
            "--models",
            "yolo11n-detect,tinynet",
            "--weights",
            "random",
            "--runs",
            "2",
            "--threads",
            str(threads),
            "--no-dissect",
            "--device",
            "cpu",
            "--images",
            str(image),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    data = load_run(tmp_path / "out")["json"]
    assert data["config"]["torch_threads"] == threads
    assert [(m["model"], m["torch_threads"]) for m in data["models"]] == [
        ("YOLO11nDetect", threads),
        ("TinyNet", threads),
    ]


# =========================================================================================
# Time breakdown: blocks that sleep for known times
# =========================================================================================
class Sleep(nn.Module):
    """Sleeps for a known time and notes how long it really slept (a busy machine wakes it late)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.slept_ms = 0.0

    def forward(self, x):
        start = time.perf_counter()
        time.sleep(self.seconds)
        self.slept_ms += (time.perf_counter() - start) * 1000
        return x


class Nested(nn.Module):
    """A block with children: only the block is a top-level row; its leaves are timed too."""

    def __init__(self):
        super().__init__()
        self.first = Sleep(0.020)
        self.second = Sleep(0.040)

    def forward(self, x):
        return self.second(self.first(x))


BLOCK_SECONDS = {"a": 0.030, "b": 0.060, "c": 0.090, "nested": 0.060}
OUTSIDE_SECONDS = 0.020  # forward time spent outside every block
HOOK_SLACK_MS = 10  # a block's hooks sit just outside its sleep; allow for scheduling


def test_time_breakdown_against_known_sleeps(ub):
    net = nn.Sequential()
    for name, seconds in BLOCK_SECONDS.items():
        net.add_module(name, Nested() if name == "nested" else Sleep(seconds))
    x = torch.zeros(1)
    outside = Sleep(OUTSIDE_SECONDS)  # not registered in net: time between blocks

    def call():
        start = time.perf_counter()
        outside(x)
        net(x)
        return None, {"forward": time.perf_counter() - start}

    blocks = list(net.named_children())
    result = TimeBreakdown(torch.device("cpu")).run(blocks, leaf_modules(net), call)
    forward_ms = result.forward_ms
    rows = {row.block: row for row in result.blocks}
    assert set(rows) == set(BLOCK_SECONDS) | {"(outside top-level blocks)"}

    # The truth is what each block really slept, measured inside it (at least its nominal time).
    truth = {
        name: (net.nested.first.slept_ms + net.nested.second.slept_ms)
        if name == "nested"
        else getattr(net, name).slept_ms
        for name in BLOCK_SECONDS
    }
    for name, seconds in BLOCK_SECONDS.items():
        ms = rows[name].ms
        assert truth[name] >= seconds * 1000 - 1
        assert truth[name] <= ms <= truth[name] + HOOK_SLACK_MS, (name, ms, truth[name])
        assert rows[name].share == pytest.approx(ms / forward_ms, rel=1e-6)
        assert rows[name].share == pytest.approx(truth[name] / forward_ms, abs=HOOK_SLACK_MS / forward_ms), name
    # Not double counted: the nested block's leaves are not added to it, nor the blocks to each other.
    blocks_ms = sum(rows[name].ms for name in BLOCK_SECONDS)
    assert blocks_ms <= forward_ms + 1.0
    assert forward_ms >= sum(truth.values()) + outside.slept_ms
    remainder = rows["(outside top-level blocks)"]
    assert remainder.ms == pytest.approx(forward_ms - blocks_ms, abs=1e-6)
    assert outside.slept_ms <= remainder.ms + 1.0
    assert remainder.share == pytest.approx(remainder.ms / forward_ms, rel=1e-6)

    leaves = {leaf.name: leaf for leaf in result.top_leaves}
    assert set(leaves) == {"a", "b", "c", "nested.first", "nested.second"}
    for name, leaf in leaves.items():
        slept = net.get_submodule(name).slept_ms
        assert leaf.calls == 1
        assert slept <= leaf.ms <= slept + HOOK_SLACK_MS, (name, leaf.ms, slept)
