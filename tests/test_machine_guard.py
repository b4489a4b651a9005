"""The machine-state guard's CPU side: the share of the machine's CPU time other processes used,
computed from a fake /proc (the machine's /proc/stat, the tool's own processes' and a hog's
/proc/<pid>/stat, advanced tick by tick), the 'busy' flag and the busiest processes, and the
report's machine-state summary: one line when every model agrees, per-model lines where they differ."""

from pathlib import Path

import pytest

from vision_bench.measure.cpu_share import BUSY_LIMIT, MIN_SPAN_S, CpuAccount
from vision_bench.measure.machine_state import MachineGuard, merge_guards
from vision_bench.measure.sampling_report import CLEAN, machine_state_blocks, machine_state_summary
from vision_bench.measure.timed_runs import latency_summary
from vision_bench.records.measurement import RunKind, RunRecord
from vision_bench.records.model_result import ModelResult
from vision_bench.reports.render_markdown import render_markdown

WORKER, SERVER, MAIN, HOG = 1000, 999, 998, 4242
TICKS = 100  # per second, as /proc counts


class FakeProc:
    """A /proc with two CPUs, the tool's three processes and a hog; `advance` moves the clock and
    every counter as if each process had used the CPUs given (in CPUs, 1.0 = one core busy)."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root, self.cpus, self.now = root, cpus, 0.0
        self.user = self.idle = 0
        self.ticks = {WORKER: 0, SERVER: 0, MAIN: 0, HOG: 0}
        self.names = {WORKER: "python", SERVER: "python", MAIN: "python", HOG: "python3"}
        (root / str(HOG)).mkdir(parents=True)
        (root / str(HOG) / "cmdline").write_bytes(b"python3\0-c\0while True: pass\0")
        self.write()

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float, **used: float) -> None:
        ticks = round(seconds * TICKS)
        pids = {"worker": WORKER, "server": SERVER, "main": MAIN, "hog": HOG}
        busy = 0
        for name, cpus in used.items():
            self.ticks[pids[name]] += round(cpus * ticks)
            busy += round(cpus * ticks)
        self.user += busy
        self.idle += self.cpus * ticks - busy
        self.now += seconds
        self.write()

    def write(self) -> None:
        per_cpu = [
            f"cpu{i} {self.user // self.cpus} 0 0 {self.idle // self.cpus} 0 0 0 0 0 0" for i in range(self.cpus)
        ]
        (self.root / "stat").write_text(
            "\n".join([f"cpu  {self.user} 0 0 {self.idle} 0 0 0 0 0 0", *per_cpu, "intr 0"])
        )
        for pid, ticks in self.ticks.items():
            (self.root / str(pid)).mkdir(exist_ok=True)
            parent = {WORKER: SERVER, SERVER: MAIN}.get(pid, 1)
            fields = ["S", str(parent)] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 8
            (self.root / str(pid) / "stat").write_text(f"{pid} ({self.names[pid]}) {' '.join(fields)}\n")


@pytest.fixture
def proc(tmp_path):
    return FakeProc(tmp_path / "proc")


def timed_run(seconds: float, state=None, kind=RunKind.TIMED) -> RunRecord:
    return RunRecord(
        image="a.jpg", kind=kind, total_s=seconds, preprocess_s=0.0, forward_s=seconds, postprocess_s=0.0, state=state
    )


def guarded_runs(
    proc: FakeProc, runs: int, seconds: float, hog_from: int | None = None, hog: float = 1.0, limit: float = BUSY_LIMIT
):
    """`runs` timed runs of `seconds` each, the worker using both CPUs less what a hog takes from
    run `hog_from` on; returns the guard's record and the runs' records."""
    account = CpuAccount(proc.root, own_pids=[WORKER, SERVER, MAIN], clock=proc.clock, limit=limit)
    guard = MachineGuard("cpu", cpu=account)
    guard.begin()
    records = []
    for index in range(runs):
        hogging = hog_from is not None and index >= hog_from
        proc.advance(seconds, worker=2.0 - (hog if hogging else 0.0), main=0.01, hog=hog if hogging else 0.0)
        records.append(timed_run(seconds, guard.after_run()))
    guard.close()
    return guard.record(), records


def test_the_tools_own_load_is_clean(proc):
    record, runs = guarded_runs(proc, 20, 0.1)
    assert all(r.state.flags == [] for r in runs)
    assert all(r.state.other_cpu_share == 0.0 for r in runs)
    assert all(r.state.own_cpu_share == pytest.approx(1.0, abs=0.02) for r in runs)
    assert record.own_cpu_s == pytest.approx(2.0 * 2.0 + 0.01 * 2.0, abs=0.05) and record.other_cpu_share == 0.0
    assert record.busiest is None and record.scans == 0  # a quiet machine costs no scan of every process
    state = latency_summary([timed_run(1.0, kind=RunKind.COLD), *runs], record).machine_state
    assert state.clean and state.flagged.busy == 0 and state.own_cpu_share_window == pytest.approx(1.0, abs=0.02)


def test_a_hog_flags_every_run_and_is_named(proc):
    record, runs = guarded_runs(proc, 20, 0.1, hog_from=0)
    assert all(r.state.flags == ["busy"] for r in runs)
    assert all(r.state.other_cpu_share == pytest.approx(0.5, abs=0.02) for r in runs)
    assert record.other_cpu_share == pytest.approx(0.5, abs=0.02)
    assert [p.pid for p in record.busiest] == [HOG]  # the tool's own processes are never named
    assert record.busiest[0].command == "python3 -c while True: pass"
    assert 0.4 < record.busiest[0].cpu_share <= 0.5
    state = latency_summary(runs, record).machine_state
    assert not state.clean and state.flagged.busy == 20
    assert any(f"pid {HOG}" in w and "50%" in w for w in state.warnings)


def test_runs_are_judged_in_spans_and_discard_leaves_the_busy_ones_out(proc):
    per_span = round(MIN_SPAN_S / 0.1)
    record, runs = guarded_runs(proc, 3 * per_span + 2, 0.1, hog_from=per_span, hog=0.5)
    flags = [bool(r.state.flags) for r in runs]
    assert flags == [False] * per_span + [True] * (2 * per_span + 2)  # the short tail joins the span before
    assert runs[0].state.other_cpu_share == 0.0 and runs[-1].state.other_cpu_share == pytest.approx(0.25, abs=0.02)
    summary = latency_summary(runs, record, discard_flagged=True)
    assert summary.latency_end_to_end.n == per_span and summary.machine_state.discarded == 2 * per_span + 2


def test_a_share_under_the_limit_or_within_the_ticks_is_not_busy(proc):
    _, runs = guarded_runs(proc, 10, 0.1, hog_from=0, hog=BUSY_LIMIT)  # 5% of two CPUs: under the limit
    assert not any(r.state.flags for r in runs)
    _, runs = guarded_runs(proc, 1, 0.05, hog_from=0, hog=0.4)  # 20%, but 10 ticks cannot tell 20% from 10%
    assert runs[0].state.flags == [] and runs[0].state.other_cpu_share == pytest.approx(0.2)


def test_busy_limit_sets_the_flag_and_100_percent_never_flags(proc):
    _, runs = guarded_runs(proc, 10, 0.1, hog_from=0, hog=0.4, limit=0.25)  # 20% of the CPU time
    assert not any(r.state.flags for r in runs)
    record, runs = guarded_runs(proc, 10, 0.1, hog_from=0, hog=2.0, limit=1.0)  # everything the machine had
    assert not any(r.state.flags for r in runs) and record.busy_limit == 1.0 and record.other_cpu_share == 1.0


def test_processes_guards_merge(proc):
    quiet, _ = guarded_runs(proc, 10, 0.1)
    busy, _ = guarded_runs(proc, 10, 0.1, hog_from=0)
    merged = merge_guards([quiet, busy])
    assert merged.samples == quiet.samples + busy.samples and merged.capacity_cpu_s == pytest.approx(4.0, abs=0.05)
    assert merged.other_cpu_share == pytest.approx(0.25, abs=0.02) and [p.pid for p in merged.busiest] == [HOG]


def model_with_state(name: str, proc: FakeProc, hog: bool) -> ModelResult:
    record, runs = guarded_runs(proc, 10, 0.1, hog_from=0 if hog else None)
    return ModelResult(model=name, machine_state=latency_summary(runs, record).machine_state)


def test_the_summary_is_one_line_when_the_models_agree(proc):
    models = [model_with_state(name, proc, hog=False) for name in ("A", "B", "C")]
    assert machine_state_summary(models) == [CLEAN]
    text = render_markdown(machine_state_blocks(models))
    assert CLEAN in text and "Warning" not in text and "A:" not in text
    busy = [model_with_state(name, proc, hog=True) for name in ("A", "B")]
    (line,) = machine_state_summary(busy)
    assert line.startswith("machine not clean during the timed runs of every model: 20 of 20 timed runs were busy")
    assert f"pid {HOG}" in line and "A:" not in line


def test_models_whose_state_differs_get_their_own_line(proc):
    models = [model_with_state("A", proc, hog=False), model_with_state("B", proc, hog=True)]
    models += [model_with_state("C", proc, hog=False)]
    first, *exceptions = machine_state_summary(models)
    assert first == "machine clean during the timed runs of 2 of 3 models"
    assert len(exceptions) == 1 and exceptions[0].startswith("B: not clean: 10 of 10 timed runs were busy")
    assert f"pid {HOG}" in exceptions[0]
    text = render_markdown(machine_state_blocks(models))
    assert "Warning: the machine was not clean" in text and text.count("pid 4242") == 1


def test_a_busy_models_record_fits_the_schema_and_compare_refuses_a_verdict(proc, tmp_path):
    import json

    from test_compare_and_merge import synthetic_file, synthetic_model

    from vision_bench.records.codec import to_json
    from vision_bench.records.model_result import with_records
    from vision_bench.reports.compare import REFUSED, compare_model
    from vision_bench.reports.results_file import validate_results

    record, runs = guarded_runs(proc, 10, 0.1, hog_from=0)
    base = synthetic_model("Net", [0.1] * 10)
    new = {**base, "runs": [base["runs"][0], *map(to_json, runs)], "guard": to_json(record)}
    new["machine_state"] = to_json(latency_summary(with_records(new).runs, record).machine_state)
    data = json.loads(synthetic_file(tmp_path / "new.json", [new]).read_text())
    validate_results(data, tmp_path / "new.json", "--compare")  # raises on a file the schema rejects
    assert data["models"][0]["runs"][1]["state"]["flags"] == ["busy"]
    assert compare_model(with_records(base), with_records(new)).verdict == f"{REFUSED} (new)"


def test_the_busy_limits_help_states_the_guards_default():
    from conftest import ROOT

    assert (
        f"over PCT%% of the CPU time (default {BUSY_LIMIT * 100:g})" in (ROOT / "vision_bench" / "cli.py").read_text()
    )


def test_the_cpu_counters_are_read_only_where_a_span_can_end(proc):
    """Reading /proc at every run boundary would cost a fast model's runs 0.3-0.7% each: the counters are
    read at the window's start, once a span has lasted MIN_SPAN_S, and at the window's end."""
    account = CpuAccount(proc.root, own_pids=[WORKER, SERVER, MAIN], clock=proc.clock)
    reads = []
    real_read = account.read
    account.read = lambda: reads.append(proc.clock()) or real_read()  # type: ignore[method-assign]
    guard = MachineGuard("cpu", cpu=account)
    guard.begin()
    runs = 20
    for _ in range(runs):
        proc.advance(0.1, worker=2.0, main=0.01, hog=0.0)
        guard.after_run()
    guard.close()
    record = guard.record()
    assert len(reads) == 1 + round(runs * 0.1 / MIN_SPAN_S)  # the start, then every MIN_SPAN_S (the last is the end)
    assert record.window_s == pytest.approx(runs * 0.1) and record.other_cpu_share == 0.0
