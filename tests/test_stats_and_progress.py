"""Layer statistics exact on any strides without full-size copies, the dissection's extra peak
memory bounded by the largest activation, and progress lines during long passes."""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, SCRIPT
from PIL import Image
from torch import nn

import vision_bench.progress
from vision_bench.inspect.layer_stats import float64_summary, memory_chunks, tensor_stats
from vision_bench.models.base import ModelBenchmark
from vision_bench.progress import pass_progress


def reference(t: torch.Tensor) -> dict:
    a = t.double().numpy()
    finite = a[np.isfinite(a)]
    return {
        "min": finite.min(),
        "max": finite.max(),
        "mean": finite.mean(),
        "std": finite.std(),
        "zero_fraction": (a == 0).mean(),
        "nan_count": int(np.isnan(a).sum()),
        "inf_count": int(np.isinf(a).sum()),
    }


def assert_matches(stats: dict, ref: dict, rel=1e-6):
    for key in ("min", "max"):
        assert stats[key] == ref[key], key  # min and max are values of the tensor
    # float32 partial sums, then float64: the mean is within 1e-7 of the data's spread even when
    # it is close to zero (a relative bound alone would ask float64 accuracy of float32 sums)
    assert stats["mean"] == pytest.approx(ref["mean"], rel=rel, abs=1e-7 * ref["std"])
    assert stats["std"] == pytest.approx(ref["std"], rel=rel)
    assert stats["zero_fraction"] == ref["zero_fraction"]
    assert stats["nan_count"] == ref["nan_count"] and stats["inf_count"] == ref["inf_count"]


def test_stats_exact_on_permuted_and_channels_last_tensors(ub):
    gen = torch.Generator().manual_seed(1)
    channels_last = (torch.randn(2, 24, 40, 30, generator=gen) * 3 + 500).to(memory_format=torch.channels_last)
    permuted = torch.relu(torch.randn(7, 33, 50, generator=gen)).permute(2, 0, 1)  # zeros too
    sliced = torch.randn(6, 40, 41, generator=gen)[:, 1:, ::2]  # gaps: not dense
    for t in (channels_last, permuted, sliced):
        assert not t.is_contiguous()
        assert_matches(tensor_stats(t), reference(t))


def test_stats_with_zeros_nan_and_inf(ub):
    t = torch.arange(-50, 150, dtype=torch.float32).reshape(10, 20).t()  # non-contiguous, one exact zero
    t[3, 4] = float("nan")
    t[5, 6] = float("inf")
    t[7, 8] = -float("inf")
    t[0, 0:3] = 0.0
    stats = tensor_stats(t)
    assert_matches(stats, reference(t))
    assert stats["nan_count"] == 1 and stats["inf_count"] == 2
    all_nan = tensor_stats(torch.full((3, 4), float("nan")))
    assert all_nan["nan_count"] == 12 and all_nan["min"] is None and all_nan["std"] is None


def test_stats_of_a_large_tensor_against_float64_numpy(ub):
    """4.2 M elements with a large offset (float32 sums would drift) in channels_last."""
    gen = torch.Generator().manual_seed(2)
    t = (torch.randn(1, 64, 256, 256, generator=gen) * 0.01 + 1000).to(memory_format=torch.channels_last)
    t[0, :, :8] = 0.0
    ref = reference(t)
    stats = tensor_stats(t)
    assert_matches(stats, ref, rel=1e-6)


def test_float64_summary_of_a_permuted_tensor_in_chunks(ub):
    """Chunks split along the dimensions outermost in memory, whatever their order: min, max, the
    sum, the squared deviations and the non-zero count match a float64 copy, and the chunks cover
    every element once."""
    t = torch.randn(3, 5000, 7).permute(2, 0, 1) * 0.01 + 100
    t[1, 2, 3] = 0.0
    chunks = list(memory_chunks(t, limit=4000))
    assert sum(c.numel() for c in chunks) == t.numel() and max(c.numel() for c in chunks) <= 4000
    low, high, total, squares, nonzeros = float64_summary(t)
    d = t.double()
    assert float(low) == float(d.min()) == 0.0 and float(high) == float(d.max())
    assert float(total) == pytest.approx(float(d.sum()), rel=1e-14)
    assert float(squares) == pytest.approx(float(((d - d.mean()) ** 2).sum()), rel=1e-9)
    assert int(nonzeros) == t.numel() - 1
    assert [float(v) for v in float64_summary(torch.tensor(2.5))] == [2.5, 2.5, 2.5, 0.0, 1.0]


def test_half_precision_and_integer_outputs_are_summarised_without_a_float32_copy(ub):
    """bfloat16, float16 and integer outputs go through the float64 chunks directly: the figures
    equal those of the same values in float32."""
    base = torch.randn(2, 8, 30, 30)
    for t in (base.bfloat16(), base.half(), (base * 10).round().to(torch.int32)):
        assert tensor_stats(t) == tensor_stats(t.float())


def test_a_constant_tensor_has_std_0_and_its_mean_inside_its_range(ub):
    """The audit's case: float32 accumulation gave std 2.86e-6 and a mean above the max."""
    for value in (-10.150347709655762, 1e4 + 0.1, 3.0):
        t = torch.full((1, 64, 80, 80), value).to(memory_format=torch.channels_last)
        stats = tensor_stats(t)
        assert stats["std"] == 0.0 and stats["min"] == stats["max"] == stats["mean"] == float(t[0, 0, 0, 0]), stats
    near = torch.full((4, 1000, 1000), -10.150347709655762)
    near[0, 0, 0] = -10.15034580230713  # one value a few ulps away
    stats = tensor_stats(near)
    assert stats["min"] <= stats["mean"] <= stats["max"]
    assert stats["std"] == pytest.approx(float(near.double().std(correction=0)), rel=1e-6)


MEMORY_CHILD = textwrap.dedent("""
    import importlib.util, json, sys, tempfile
    from pathlib import Path
    import torch
    from torch import nn
    sys.path.insert(0, str(Path(sys.argv[1]).parent))
    import vision_bench.inspect.dissection as dissection
    dissection.DISSECT_QUEUE_BYTES = 32 << 20
    torch.set_grad_enabled(False)

    class Scale(nn.Module):                    # elementwise: the output keeps channels_last strides
        def forward(self, x):
            return x * 1.001 + 0.01

    class Tokens(nn.Module):                   # a fresh (1, tokens, 32) sequence seen through a transpose
        def forward(self, x):
            return torch.randn(1, x.shape[1], x.shape[2] * x.shape[3]).transpose(1, 2)

    net = nn.Sequential(Scale(), Scale(), Scale(), Tokens())
    x = torch.randn(1, 32, 768, 1024).to(memory_format=torch.channels_last)
    activation = x.numel() * 4

    def hwm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    def peak(call):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        call()
        return hwm()

    net(x)
    plain = peak(lambda: net(x))
    with tempfile.TemporaryDirectory() as tmp:
        stats_only = peak(lambda: dissection.LayerDissector(Path(tmp) / "a", input_hw=(768, 1024), write_files=False)
                          .run(net, lambda: net(x)))
        files = peak(lambda: dissection.LayerDissector(Path(tmp) / "b", input_hw=(768, 1024)).run(net, lambda: net(x)))
        written = len(list((Path(tmp) / "b").glob("*.png")))
    print("RESULT " + json.dumps({"activation": activation, "plain": plain, "stats_only": stats_only,
                                  "files": files, "queue_bytes": dissection.DISSECT_QUEUE_BYTES, "pngs": written}))
""")


def test_dissection_extra_peak_is_bounded_by_the_largest_activation(tmp_path):
    """Leaves emit 100 MB channels_last and permuted outputs. Statistics only: extra peak under
    a quarter of one activation (a reshape or float64 copy alone would be 1x or 2x). With files:
    under the queue's byte bound plus one host copy (16 of 32 channels: half an activation) plus
    the writers' working memory. The old code added 3x (reshape and float64 copies) and 8 queued copies."""
    child = tmp_path / "child.py"
    child.write_text(MEMORY_CHILD)
    proc = subprocess.run(
        [sys.executable, str(child), str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT ")).split(" ", 1)[1])
    assert r["pngs"] == 4
    assert r["stats_only"] - r["plain"] < 0.25 * r["activation"], r
    # host copies in flight: at most the queue's byte bound, or one copy when it is larger; plus
    # the writer threads' working memory (one colour-mapped channel at a time, ~20 MB each here)
    host_copy = r["activation"] // 2  # 16 of the 32 channels
    assert r["files"] - r["plain"] < r["queue_bytes"] + host_copy + 64 * 2**20, r


class Sleepy(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        time.sleep(self.seconds)
        return self.linear(x)


class SlowNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.blocks = nn.Sequential(*[Sleepy(0.15) for _ in range(4)])
        self.long = Sleepy(0.9)  # one long module: the ticker must still speak

    def forward(self, x):
        return self.long(self.blocks(self.stem(x)))


@pytest.fixture
def slow_bench(ub, monkeypatch):
    monkeypatch.setattr(vision_bench.progress, "PROGRESS_INTERVAL_SEC", 0.2)

    class SlowBenchmark(ModelBenchmark):
        MODEL_NAME = "SlowFake"

        def load_pretrained(self):
            return self.load_random()

        def load_random(self):
            self.net = SlowNet().eval()
            return "random"

        def network(self):
            return self.net

        def preprocess(self, image):
            return torch.ones(1, 4)

        def forward(self, inputs):
            return self.net(inputs)

        def postprocess(self, outputs, image):
            return outputs

    bench = SlowBenchmark(torch.device("cpu"), weights="random")
    bench.load()
    return bench


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[PROGRESS] SlowFake")]


def test_progress_lines_during_the_flops_pass(slow_bench, capsys):
    image = Image.new("RGB", (8, 8))
    slow_bench.count_flops_and_input(image)
    lines = progress_lines(capsys.readouterr().out)
    assert len(lines) >= 3, lines
    assert all("FLOPs pass" in line for line in lines)
    assert any("leaf modules run" in line and "/6 " in line for line in lines)
    assert any("last module started: blocks." in line for line in lines)
    assert all(not m._forward_pre_hooks for m in slow_bench.network().modules())


def test_progress_lines_during_the_profiled_pass_name_the_block(slow_bench, capsys):
    image = Image.new("RGB", (8, 8))
    breakdown = slow_bench.profile_time(image)
    lines = progress_lines(capsys.readouterr().out)
    assert len(lines) >= 3, lines
    assert all("profiled pass" in line for line in lines)
    assert any("in blocks (Sequential)" in line for line in lines)
    # the last ~0.9 s are one module: lines keep coming while it runs
    assert any("in long (Sleepy)" in line for line in lines)
    assert {r.block for r in breakdown.blocks} >= {"blocks (Sequential)", "long (Sleepy)"}
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in slow_bench.network().modules())


def test_a_short_pass_prints_no_progress(ub, capsys):
    net = nn.Linear(2, 2)
    with pass_progress(net, "quick pass"):
        net(torch.ones(1, 2))
    assert "[PROGRESS]" not in capsys.readouterr().out
    assert not net._forward_pre_hooks


def test_timed_runs_have_one_progress_reporter_a_phase_and_say_which_run(
    ub, slow_bench, monkeypatch, tmp_path, sample_image, capsys
):
    """Progress during cold start, warm-up and timed runs, from one reporter a phase: no reporter
    thread is started between two timed runs."""
    labels = []
    real_enter = pass_progress.__enter__

    def counting_enter(self):
        labels.append(self.label)
        return real_enter(self)

    monkeypatch.setattr(pass_progress, "__enter__", counting_enter)
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "slow-fake", type(slow_bench))
    type(slow_bench).CLI_NAME = "slow-fake"
    code = ub.main(
        [
            "--isolation",
            "none",
            "--models",
            "slow-fake",
            "--weights",
            "random",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--no-dissect",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    run_labels = [line for line in labels if "run" in line.split("SlowFake ", 1)[-1] or "cold start" in line]
    assert run_labels == ["SlowFake cold start", "SlowFake warmup runs", "SlowFake timed runs"], labels
    lines = progress_lines(capsys.readouterr().out)
    assert any(line.startswith("[PROGRESS] SlowFake timed runs") and "run 4 of 4" in line for line in lines), (
        lines
    )  # 1 cold + (1 warm-up + 2 timed) x 1 image
