"""Time to a trustworthy number: the --precision stopping rule on synthetic timings, the interval
over --processes on simulated processes, the tails' order-statistic intervals, and the
machine-state guard's NVML path through a fake of the library."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT, load_run, summarized
from test_compare_and_merge import synthetic_file, synthetic_model
from test_gate import verdict_line
from test_worker_processes import run_tool

from vision_bench.measure.machine_state import MachineGuard
from vision_bench.measure.sampling_report import machine_state_blocks, sampling_items
from vision_bench.measure.stats import median_interval, percentile_interval, runs_needed, tail_stats, tail_text
from vision_bench.measure.stopping_rule import StoppingRule, process_interval
from vision_bench.records.codec import to_json
from vision_bench.records.model_result import with_records
from vision_bench.reports.compare import REFUSED, compare_model
from vision_bench.reports.render_markdown import render_markdown


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_rule(rule, clock, draw, seconds_per_run=0.1):
    """Feed the rule one synthetic run at a time, as the timed loop does; returns (reason, runs)."""
    rule.start()
    runs = []
    while True:
        runs.append(draw())
        clock.now += seconds_per_run
        reason = rule.reason(runs)
        if reason:
            return reason, runs


def test_the_stopping_rule_stops_once_the_interval_is_tight():
    rng, clock = np.random.default_rng(1), FakeClock()
    reason, runs = run_rule(
        StoppingRule(2.0, max_seconds=1e9, clock=clock), clock, lambda: 0.1 * (1 + 0.05 * rng.standard_normal())
    )
    assert reason == "precision"
    assert StoppingRule.reached(runs) <= 2.0
    assert StoppingRule.reached(runs[:-1]) is None or StoppingRule.reached(runs[:-1]) > 2.0  # not one run later
    assert len(runs) >= 10


def test_the_stopping_rule_respects_the_time_cap_and_the_count_cap():
    rng, clock = np.random.default_rng(2), FakeClock()
    noisy = lambda: float(rng.lognormal(0.0, 1.0))  # far too noisy for +-1% in a few hundred runs
    rule = StoppingRule(1.0, max_seconds=30.0, clock=clock)
    reason, runs = run_rule(rule, clock, noisy, seconds_per_run=0.5)
    assert reason == "max-time" and len(runs) == 60
    record = rule.record(runs, reason)
    assert record.stopped_by == "max-time" and record.reached_pct > 1.0 and record.seconds == 30.0
    reason, runs = run_rule(StoppingRule(1.0, max_seconds=1e9, max_runs=50, clock=clock), clock, noisy)
    assert reason == "max-runs" and len(runs) == 50


def simulate(processes: int, runs: int, rng, between=0.05, within=0.01):
    """One experiment: each process has its own level (between-process spread), its runs scatter
    around it; the true median of the process medians is 1.0."""
    levels = 1.0 + between * rng.standard_normal(processes)
    return [level * (1.0 + within * rng.standard_normal(runs)) for level in levels]


@pytest.mark.parametrize("processes", [3, 8])
def test_the_interval_over_processes_covers_where_one_process_does_not(processes):
    rng = np.random.default_rng(processes)
    pooled = single = 0
    for _ in range(1000):
        groups = simulate(processes, 30, rng)
        interval = process_interval([float(np.median(g)) for g in groups])
        pooled += interval.ci95_low <= 1.0 <= interval.ci95_high
        low, high, _ = median_interval(groups[0])
        single += low <= 1.0 <= high
    assert pooled >= 900, pooled
    assert single <= 500, single  # an interval built inside one process is blind to the spread between them
    assert interval.method == ("t over process medians" if processes < 6 else "order statistics of process medians")


def test_p99_is_not_estimable_below_the_runs_it_needs():
    assert runs_needed(0.99) == 368 and runs_needed(0.9) == 36 and runs_needed(0.5) == 6
    rng = np.random.default_rng(3)
    short = tail_stats(list(rng.lognormal(size=367))).p99
    assert short.ci95_low is None and short.needed_runs == 368 and short.value is not None
    long = tail_stats(list(rng.lognormal(size=368))).p99
    assert long.ci95_low <= long.value <= long.ci95_high and long.ci_coverage >= 0.95
    assert tail_text(tail_stats(list(rng.lognormal(size=20))).p99).endswith(
        "not estimable with 20 runs: its 95% interval needs 368)"
    )


def test_the_p90_interval_covers_the_true_p90():
    rng, q90 = np.random.default_rng(4), float(-np.log(0.1))  # exponential(1)
    covered = sum(
        low <= q90 <= high for low, high, _ in (percentile_interval(rng.exponential(size=60), 0.9) for _ in range(1000))
    )
    assert covered >= 930, covered


class FakeNvml:
    """The pynvml functions the guard calls; what each sample returns is set by the test."""

    class NVMLError(Exception):
        pass

    def __init__(self, reasons, processes):
        self.reasons, self.processes, self.calls = iter(reasons), iter(processes), []

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return {1: 1410, 2: 1215}[kind]

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 71

    def nvmlDeviceGetPowerUsage(self, handle):
        raise self.NVMLError("not supported")  # some boards: the guard records None and goes on

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return next(self.reasons)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=1 << 20) for pid in next(self.processes)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return []


def test_the_nvml_guard_flags_throttled_and_shared_runs_and_discard_leaves_them_out():
    import os

    me = os.getpid()
    # Samples at 6 boundaries of 5 runs: thermal slowdown (0x20) around run 2, a stranger (pid 4242) around run 4;
    # idle (0x1) is no slowdown.
    fake = FakeNvml(reasons=[0x1, 0x0, 0x20, 0x0, 0x0, 0x0], processes=[[me], [me], [me], [me, 4242], [me], [me]])
    guard = MachineGuard(SimpleNamespace(type="cuda", index=0), nvml=fake)
    assert guard.static.nvml == "ok"
    guard.begin()
    states = [guard.after_run() for _ in range(5)]
    guard.close()
    assert fake.calls == ["init", "shutdown"]
    assert [s.flags for s in states] == [[], ["throttled"], ["throttled", "shared"], ["shared"], []]
    assert states[1].throttle_reasons == ["sw_thermal_slowdown"] and states[3].other_pids == [4242]
    assert states[0].sm_clock_mhz == 1410 and "power_w" not in to_json(states[0])

    times = [0.100, 0.300, 0.300, 0.250, 0.110]  # the flagged runs are the slow ones
    record = {
        "runs": [
            {
                "image": "a.jpg",
                "image_size": [4, 4],
                "kind": "cold",
                "cold": True,
                "total_s": 1.0,
                "forward_s": 1.0,
                "preprocess_s": 0.0,
                "postprocess_s": 0.0,
            }
        ]
        + [
            {
                "image": "a.jpg",
                "image_size": [4, 4],
                "kind": "timed",
                "cold": False,
                "total_s": t,
                "forward_s": t,
                "preprocess_s": 0.0,
                "postprocess_s": 0.0,
                "state": to_json(s),
            }
            for t, s in zip(times, states)
        ],
        "guard": to_json(guard.record()),
        "model": "Net",
    }
    summary = summarized(record, discard_flagged=False)
    state = summary["machine_state"]
    assert state["flagged"] == {"throttled": 2, "shared": 2, "busy": 0} and not state["clean"]
    assert summary["latency_end_to_end"]["n"] == 5 and state["other_pids"] == [4242]
    lines = render_markdown(machine_state_blocks([with_records(summary)]))
    assert "2 of 5 timed runs ran throttled" in lines and "pids 4242" in lines and "Warning" in lines
    assert "2 throttled, 2 shared, 0 busy of 5 timed runs" in "\n".join(sampling_items(with_records(summary)))

    summary = summarized(record, discard_flagged=True)
    assert summary["latency_end_to_end"]["n"] == 2 and summary["latency_end_to_end"]["max"] == 0.110
    assert [r.get("discarded", False) for r in summary["runs"][1:]] == [False, True, True, True, False]  # in JSON
    assert summary["machine_state"]["discarded"] == 3


def test_compare_refuses_a_verdict_and_the_gate_when_a_side_ran_throttled(tmp_path):
    base = synthetic_model("Net", np.linspace(0.100, 0.101, 10))
    new = synthetic_model("Net", np.linspace(0.150, 0.151, 10))
    new["runs"][3]["state"] = {"flags": ["throttled"], "load1": 0.1, "involuntary_switches": 0}
    judged = lambda: compare_model(with_records(copy.deepcopy(base)), with_records(copy.deepcopy(new))).verdict
    assert judged() == f"{REFUSED} (new)"
    new["runs"][3]["discarded"] = True  # --discard-throttled left it out: the rest can be judged
    assert judged() == "slower"
    del new["runs"][3]["discarded"]
    from conftest import run_cli

    proc = run_cli(
        "--compare",
        synthetic_file(tmp_path / "b.json", [base]),
        synthetic_file(tmp_path / "n.json", [new], run_id="20260101_000001"),
        "--fail-if-slower",
        "5",
        "--output-dir",
        tmp_path / "out",
    )
    assert proc.returncode == 1 and REFUSED in verdict_line(proc)
    assert "the gate cannot judge it" in proc.stderr + proc.stdout


def test_precision_and_processes_through_the_command_line(tmp_path, sample_image):
    proc = run_tool(
        "--models",
        "tinyconv",
        "--weights",
        "random",
        "--precision",
        "50",
        "--processes",
        2,
        "--threads",
        1,
        "--no-dissect",
        "--images",
        sample_image,
        "--output-dir",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = load_run(tmp_path)
    model = run["json"]["models"][0]
    assert [p["process"] for p in model["processes"]] == [1, 2]
    assert all(p["stopped_by"] in ("precision", "max-time", "max-runs") for p in model["processes"])
    assert {r["process"] for r in model["runs"] if r["kind"] == "cold"} == {1, 2}
    assert model["latency_end_to_end"]["n"] == sum(p["n"] for p in model["processes"])
    assert model["latency_interval"]["method"] == "t over process medians"
    assert model["machine_state"]["runs_sampled"] == model["latency_end_to_end"]["n"]
    own = model["guard"]["own_pids"]  # both workers, the fork server and the main process: never "other"
    assert {p["pid"] for p in model["processes"]} < set(own) and len(own) == 4
    text = run["md_path"].read_text()
    assert "Per-process end-to-end medians: #1" in text and "p99" in text and "Machine state" in text
    assert (tmp_path / "results" / f"report_{run['run_id']}" / "TinyConv_worker_p2.log").exists()
    from conftest import run_cli

    bad = run_cli("--precision", "2", "--runs", "5", "--models", "yolo11n-detect")
    assert bad.returncode == 2 and "give one" in bad.stderr
    assert ROOT.exists()
