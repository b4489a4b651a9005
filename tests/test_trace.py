"""--trace: the profiler trace of one more warm pass, its ranges (pipeline phases, one per call of
every leaf module, named like the dissection's records), its links from both reports, and its
summary; the CUDA parts of the summary from a synthetic Kineto event list (no GPU here)."""

import dataclasses
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import load_run
from PIL import Image
from torch import nn
from worker_models import TinyConvBenchmark

from vision_bench.inspect.trace import profiler_activities, self_times, summarize_trace
from vision_bench.inspect.trace_report import trace_blocks
from vision_bench.records.inspection import DissectionSummary
from vision_bench.records.model_result import with_records
from vision_bench.records.trace_events import chrome_events
from vision_bench.reports.html import trace_html
from vision_bench.reports.render_markdown import render_markdown


class SharedActNet(nn.Module):
    """A block with two leaves, a leaf called twice (shared, as ultralytics shares its SiLU) and a
    leaf that never runs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.act = nn.ReLU()
        self.head = nn.Conv2d(4, 2, 1)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.act(self.head(self.act(self.stem(x))))


class TinySharedBenchmark(TinyConvBenchmark):
    """TinyConv's pipeline around a network with a shared leaf (called twice) and an unused one."""

    MODEL_NAME, CLI_NAME = "TinyShared", "tinyshared"

    def load_random(self):
        self.model = SharedActNet().eval()
        return "random (test)"

    def postprocess(self, outputs, image):
        return outputs.mean()


LEAF_CALLS = {"stem.0": 1, "stem.1": 1, "act": 2, "head": 1}  # `unused` never runs: no range
PIPELINE = {"preprocess": 1, "forward": 1, "postprocess": 1}


def read_trace(path) -> list[dict]:
    return json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]


def ranges_of(events) -> list[dict]:
    return [e for e in events if e.get("cat") == "user_annotation"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    bench = TinySharedBenchmark(torch.device("cpu"), weights="random")
    bench.load()
    image = Image.new("RGB", (16, 16))
    bench.run_pipeline(image)  # warm, as in a run
    folder = tmp_path_factory.mktemp("trace")
    summary = bench.record_trace(image, folder / "tiny_trace.json.gz")
    dissection = bench.dissect_layers(image, folder / "layers", write_files=False)
    return bench, summary, read_trace(folder / "tiny_trace.json.gz"), dissection


def test_one_range_per_leaf_call_and_the_pipeline_ranges(traced):
    bench, summary, events, dissection = traced
    names = Counter(e["name"] for e in ranges_of(events))
    # The top-level blocks are stem, act, head, unused: stem is no leaf, so it gets its own range.
    assert names == Counter({**LEAF_CALLS, **PIPELINE, "stem": 1})
    layers = json.loads((Path(dissection.folder) / "layers_metadata.json").read_text())["records"]
    assert Counter(r["name"] for r in layers.values()) == Counter(LEAF_CALLS)
    assert summary.leaf_ranges == dissection.records == 5 and summary.module_ranges == 6
    assert summary.events == len(events)
    assert {p: v.ranges for p, v in summary.phases.items()} == PIPELINE
    # Nesting: every module range lies in the forward range, the stem's leaves in the stem's range.
    by_name = {}
    for e in ranges_of(events):
        by_name.setdefault(e["name"], []).append(e)

    def inside(inner, outer):
        return outer["ts"] <= inner["ts"] and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"] + 1e-3

    forward, stem = by_name["forward"][0], by_name["stem"][0]
    assert all(inside(e, forward) for name in [*LEAF_CALLS, "stem"] for e in by_name[name])
    assert inside(by_name["stem.0"][0], stem) and inside(by_name["stem.1"][0], stem)
    assert not inside(by_name["head"][0], stem)
    # The methods wrapped for the phase ranges are the class's again.
    assert "forward" not in vars(bench) and "preprocess" not in vars(bench)


def test_shapes_recorded_stacks_left_out_by_default(traced):
    _, summary, events, _ = traced
    convs = [e for e in events if e.get("cat") == "cpu_op" and e["name"] == "aten::conv2d"]
    assert len(convs) == 2 and convs[0]["args"]["Input Dims"][0] == [1, 3, 16, 16]
    assert not any(e.get("cat") == "python_function" for e in events)
    assert summary.shapes is True and summary.stacks is False
    assert any("--trace-stacks" in item for item in summary.left_out)
    assert summary.activities == ["CPU"] and summary.cuda is None and summary.top_cuda_operators is None
    assert {op.name for op in summary.top_cpu_operators} & {
        "aten::convolution",
        "aten::_convolution",
        "aten::_slow_conv2d_forward",
        "aten::mkldnn_convolution",
    }
    rows = {b.block: b for b in summary.blocks}
    # The blocks that ran (unused never does), as the hook-based breakdown lists them.
    assert set(rows) == {"stem (Sequential)", "act (ReLU)", "head (Conv2d)", "(outside top-level blocks)"}
    assert sum(b.share for b in summary.blocks) == pytest.approx(1.0)


def run_tiny(ub, monkeypatch, out, image, *extra):
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "tinyshared", TinySharedBenchmark)
    code = ub.main(
        [
            "--models",
            "tinyshared",
            "--weights",
            "random",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--no-dissect",
            "--images",
            str(image),
            "--output-dir",
            str(out),
            "--isolation",
            "none",
            *extra,
        ]
    )
    assert code == 0
    run = load_run(out)
    run["html"] = (run["results_dir"] / f"benchmark_report_{run['run_id']}.html").read_text()
    run["md"] = run["md_path"].read_text()
    return run


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "tiny.png"
    Image.new("RGB", (24, 16), (120, 60, 30)).save(path)
    return path


def test_trace_written_and_linked_from_both_reports(ub, tmp_path, monkeypatch, tiny_image):
    run = run_tiny(ub, monkeypatch, tmp_path, tiny_image, "--trace")
    model = run["json"]["models"][0]
    trace = model["trace"]
    assert trace["file"] == f"report_{run['run_id']}/TinyShared_trace.json.gz"
    events = read_trace(run["results_dir"] / trace["file"])
    assert Counter(e["name"] for e in ranges_of(events)) == Counter({**LEAF_CALLS, **PIPELINE, "stem": 1})
    assert trace["leaf_ranges"] == model["dissection"]["records"] == 5
    assert trace["pass_wall_s"] > 0 and trace["overhead_ratio"] == pytest.approx(
        trace["pass_wall_s"] / model["latency_end_to_end"]["median"]
    )
    # Each block of the trace beside the hook-based breakdown's share of the same block.
    assert [b["block"] for b in trace["blocks"]] == [b["block"] for b in model["time_breakdown"]["blocks"]]
    assert all(b["hook_share"] is not None for b in trace["blocks"]) and trace["max_difference_pp"] is not None
    assert "trace" in model["phase_seconds"] and run["json"]["config"]["trace"] is True
    assert f"[`TinyShared_trace.json.gz`]({trace['file']})" in run["md"] and "ui.perfetto.dev" in run["md"]
    assert f'<a href="{trace["file"]}"><code>TinyShared_trace.json.gz</code></a>' in run["html"]
    assert "chrome://tracing" in run["html"] and "hooks share" in run["html"]
    # --merge copies the trace along with the output picture, and its reports link to the copy.
    results = run["results_dir"] / f"benchmark_results_{run['run_id']}.json"
    merged = tmp_path / "merged"
    assert ub.main(["--merge", str(results), str(results), "--prefer", "last", "--output-dir", str(merged)]) == 0
    merged_run = load_run(merged)
    copied = merged_run["json"]["models"][0]["trace"]["file"]
    assert copied.startswith(f"report_{merged_run['run_id']}/") and (merged_run["results_dir"] / copied).is_file()
    assert f"]({copied})" in merged_run["md_path"].read_text()


def test_no_trace_without_the_option(ub, tmp_path, monkeypatch, tiny_image):
    run = run_tiny(ub, monkeypatch, tmp_path, tiny_image)
    assert "trace" not in run["json"]["models"][0] and run["json"]["config"]["trace"] is False
    assert not list(tmp_path.rglob("*trace*.json.gz"))
    assert "Profiler trace" not in run["md"] and "_trace.json.gz" not in run["html"]


def test_trace_stacks_needs_trace(ub, tmp_path, tiny_image):
    assert (
        ub.main(
            ["--models", "yolo11n-detect", "--trace-stacks", "--images", str(tiny_image), "--output-dir", str(tmp_path)]
        )
        == 2
    )


def test_cuda_activities_only_on_cuda():
    from torch.profiler import ProfilerActivity

    assert profiler_activities(torch.device("cpu")) == [ProfilerActivity.CPU]
    assert profiler_activities(torch.device("cuda", 0)) == [ProfilerActivity.CPU, ProfilerActivity.CUDA]


def test_self_time_subtracts_direct_children_on_the_same_thread():
    ops = [
        {"name": "A", "ts": 0, "dur": 100, "tid": 1},
        {"name": "B", "ts": 10, "dur": 30, "tid": 1},
        {"name": "C", "ts": 15, "dur": 10, "tid": 1},
        {"name": "D", "ts": 50, "dur": 20, "tid": 1},
        {"name": "E", "ts": 5, "dur": 50, "tid": 2},
    ]
    assert {e.name: us for e, us in self_times(chrome_events(ops))} == {"A": 50, "B": 20, "C": 10, "D": 20, "E": 50}


def x(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def synthetic_cuda_events(gpu_start=20):
    """A forward of two blocks on the host thread (pid 1, tid 1) launching three kernels and a copy,
    which run on the GPU (pid 0, tid 7) as Kineto records them: correlation ids tie a kernel to its
    launch, External ids to the operator that launched it. Read as the trace's reader reads them."""
    g = gpu_start
    return chrome_events(
        [
            {"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "GPU 0"}},
            x("user_annotation", "forward", 0, 100),
            x("user_annotation", "a", 0, 40),
            x("user_annotation", "b", 50, 40),
            x("cpu_op", "aten::conv2d", 5, 10, **{"External id": 1}),
            x("cuda_runtime", "cudaLaunchKernel", 8, 2, correlation=101, **{"External id": 1}),
            x("cpu_op", "aten::relu", 20, 5, **{"External id": 2}),
            x("cuda_runtime", "cudaLaunchKernel", 21, 2, correlation=102, **{"External id": 2}),
            x("cpu_op", "aten::mm", 55, 10, **{"External id": 3}),
            x("cuda_runtime", "cudaLaunchKernel", 58, 2, correlation=103, **{"External id": 3}),
            x("cuda_runtime", "cudaMemcpyAsync", 60, 2, correlation=104, **{"External id": 3}),
            x("kernel", "conv_kernel", g, 10, pid=0, tid=7, correlation=101, **{"External id": 1}),
            x("kernel", "relu_kernel", g + 20, 5, pid=0, tid=7, correlation=102, **{"External id": 2}),
            x("kernel", "gemm_kernel", g + 50, 20, pid=0, tid=7, correlation=103, **{"External id": 3}),
            x("gpu_memcpy", "Memcpy DtoH", g + 80, 10, pid=0, tid=7, correlation=104, **{"External id": 3}),
            # postprocess, after the forward: never in the forward's figures
            x("user_annotation", "postprocess", 200, 30),
            x("cpu_op", "aten::sum", 205, 5, **{"External id": 4}),
            x("cuda_runtime", "cudaLaunchKernel", 206, 2, correlation=105, **{"External id": 4}),
            x("kernel", "reduce_kernel", 240, 50, pid=0, tid=7, correlation=105, **{"External id": 4}),
        ]
    )


def test_cuda_summary_from_a_synthetic_event_list():
    s = summarize_trace(synthetic_cuda_events(), ["a", "b"], {"a (Conv)": "a", "b (Mm)": "b"}, cuda=True)
    # Blocks by the device span of the kernels they queued: a 20..45, b 70..110; the forward 20..110.
    assert s.block_clock.startswith("device") and s.forward_ms == pytest.approx(0.090)
    rows = {b.block: b for b in s.blocks}
    assert rows["a (Conv)"].share == pytest.approx(25 / 90) and rows["b (Mm)"].share == pytest.approx(40 / 90)
    assert rows["(outside top-level blocks)"].share == pytest.approx(25 / 90)
    # Idle: from the forward's start (0) to its last kernel's end (110), busy 45 us.
    cuda = s.cuda
    assert cuda.window_ms == pytest.approx(0.110) and cuda.busy_ms == pytest.approx(0.045)
    assert cuda.idle_share == pytest.approx(1 - 45 / 110) and cuda.launch_bound is True
    assert cuda.kernels == 3
    ops = {op.name: op for op in s.top_cuda_operators}
    assert list(ops) == ["aten::sum", "aten::mm", "aten::conv2d", "aten::relu"]
    assert ops["aten::mm"].self_ms == pytest.approx(0.030) and ops["aten::mm"].calls == 2
    assert ops["aten::sum"].share == pytest.approx(50 / 95)
    assert s.leaf_ranges == 2 and s.phases["forward"].ranges == 1


def test_cuda_summary_busy_device_is_not_launch_bound():
    """The host queues three kernels early; the device runs them back to back, 5 to 100 us."""
    events = [x("user_annotation", "forward", 0, 30), x("cpu_op", "aten::mm", 1, 10, **{"External id": 1})]
    for i, (start, end) in enumerate([(5, 35), (35, 60), (60, 100)]):
        events += [
            x("cuda_runtime", "cudaLaunchKernel", 2 + i, 1, correlation=i, **{"External id": 1}),
            x("kernel", "gemm", start, end - start, pid=0, tid=7, correlation=i, **{"External id": 1}),
        ]
    cuda = summarize_trace(chrome_events(events), [], {}, cuda=True).cuda
    assert cuda.idle_share == pytest.approx(0.05) and cuda.launch_bound is False and cuda.kernels == 3


def test_reports_show_the_cuda_summary():
    summary = summarize_trace(synthetic_cuda_events(), ["a", "b"], {"a (Conv)": "a", "b (Mm)": "b"}, cuda=True)
    r = {
        "model": "M",
        "dissection": DissectionSummary(records=2, leaf_modules=2, png_files=0, npy_files=0, seconds=0.1),
        "trace": dataclasses.replace(
            summary,
            file="report_x/M_trace.json.gz",
            bytes=2048,
            pass_wall_s=0.002,
            timed_median_s=0.001,
            overhead_ratio=2.0,
            activities=["CPU", "CUDA"],
            stacks=False,
            left_out=["Python call stacks (--trace-stacks adds them)"],
        ),
    }
    md, page = render_markdown(trace_blocks(with_records(r))), trace_html(with_records(r))
    for text in (md, page):
        assert "launch-bound" in text and "Top operators by CUDA time" in text and "aten::mm" in text
        assert "59.1%" in text and "2.00x" in text and "the dissection recorded 2 calls" in text
    assert "[`M_trace.json.gz`](report_x/M_trace.json.gz)" in md and 'href="report_x/M_trace.json.gz"' in page
