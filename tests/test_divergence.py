"""--divergence: networks with a known culprit are localised in both modes, a layer that only inherits
error is not blamed, records match by call index, the figures against numpy, memory stays bounded."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli
from torch import nn
from worker_models import OffsetLinear

from vision_bench.common import VariantUnsupported
from vision_bench.divergence.error_figures import error_figures
from vision_bench.divergence.layer_passes import (
    AutocastVariant,
    HookedVariant,
    candidate_modules,
    prefix_sizes,
    run_divergence,
)
from vision_bench.models.base import ModelBenchmark
from vision_bench.records.codec import to_json
from vision_bench.records.divergence import ErrorFigures

TOLERANCE = 1e-4


class Shared(nn.Module):
    """A network that calls one module (`shared`) three times, with `middle` between its 2nd and 3rd call."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.shared = nn.Linear(16, 16)
        self.middle = nn.Linear(16, 16)
        self.act = nn.ReLU()
        self.last = nn.Linear(16, 4)

    def forward(self, x):
        x = self.shared(self.norm(self.first(x)))
        x = self.shared(x)
        x = self.act(self.middle(x))
        return self.last(self.shared(x))


class Bench(ModelBenchmark):
    MODEL_NAME, CLI_NAME, TASK = "Tiny", "tiny", "test"

    def __init__(self, network, inputs):
        super().__init__(torch.device("cpu"), weights="random")
        self.model, self.inputs = network.eval(), inputs

    def load_pretrained(self):
        raise NotImplementedError

    def load_random(self):
        return "test"

    def network(self):
        return self.model

    def preprocess(self, image):
        return self.inputs

    def forward(self, inputs):
        return self.model(inputs)

    def postprocess(self, outputs, image):
        return outputs


def add_error(module, x):
    """The culprit's computation in the variant: its own output plus a constant."""
    return type(module).forward(module, x) + 0.05


def by_key(out):
    return {(r.name, r.call): r for r in out.records}


def own(record):
    return record.shadow.relative_l2


def inherited(record):
    return record.propagated.relative_l2


def test_a_layer_that_adds_an_error_only_in_the_variant_is_named_in_both_modes_and_nothing_after_it_is_blamed():
    torch.manual_seed(0)
    bench = Bench(Shared(), torch.randn(4, 8))
    variant = HookedVariant("planted", TOLERANCE, overrides={"middle": add_error})
    out = run_divergence(bench, variant, image=None)
    records = by_key(out)
    assert [(r.name, r.call) for r in out.records] == [
        ("first", 1),
        ("norm", 1),
        ("shared", 1),
        ("shared", 2),
        ("middle", 1),
        ("act", 1),
        ("shared", 3),
        ("last", 1),
    ]
    assert out.first_divergent.name == "middle" and out.first_propagated.name == "middle"
    assert out.over_tolerance == 1 and out.top_own[0].name == "middle"
    for key in [("first", 1), ("norm", 1), ("shared", 1), ("shared", 2)]:
        assert inherited(records[key]) == 0 and own(records[key]) == 0
    # after the culprit: the error is inherited (large), never the layer's own (exactly 0 here)
    for key in [("act", 1), ("shared", 3), ("last", 1)]:
        assert inherited(records[key]) > 100 * TOLERANCE
        assert own(records[key]) == 0
    assert own(records["middle", 1]) > 100 * TOLERANCE


def test_a_module_called_three_times_is_matched_call_by_call():
    """The fault sits in the shared module's third call only (its input comes after `middle`): calls 1
    and 2 stay exact, call 3 inherits. Matched by name alone, call 3 would be compared with call 1."""
    torch.manual_seed(1)
    bench = Bench(Shared(), torch.randn(4, 8))
    out = run_divergence(bench, HookedVariant("planted", TOLERANCE, overrides={"middle": add_error}), image=None)
    records = by_key(out)
    assert [records["shared", c].shape for c in (1, 2, 3)] == [[4, 16]] * 3
    assert inherited(records["shared", 1]) == inherited(records["shared", 2]) == 0
    assert inherited(records["shared", 3]) > 0 and out.unmatched_count == 0


def test_bfloat16_autocast_names_the_layer_whose_rounding_ruins_it_in_both_modes():
    torch.manual_seed(2)
    network = nn.Sequential(
        nn.Linear(32, 32), nn.GELU(), OffsetLinear(32), nn.ReLU(), nn.Linear(32, 32), nn.Linear(32, 8)
    )
    bench = Bench(network, torch.randn(16, 32))
    tolerance = 2 * 2**-7
    out = run_divergence(bench, AutocastVariant("torch-bf16", torch.bfloat16, tolerance), image=None)
    records = by_key(out)
    assert out.first_divergent.name == "2" and out.first_propagated.name == "2"
    assert own(records["2", 1]) > 10 * tolerance
    assert 0 < own(records["0", 1]) < tolerance  # plain bf16 rounding: an error, under the tolerance
    assert own(records["4", 1]) < tolerance < inherited(records["4", 1])  # inherits, not blamed
    assert candidate_modules(out.records, tolerance) == ["2"]
    assert bench.autocast_dtype == torch.bfloat16  # the bench is left in the variant


def test_error_figures_match_numpy_in_float64_and_non_finite_values_are_infinite_error():
    rng = np.random.default_rng(0)
    reference = rng.normal(3, 2, size=(3, 700_001)).astype(np.float32)
    variant = (reference + rng.normal(0, 1e-3, size=reference.shape)).astype(np.float32)
    figures = error_figures(torch.from_numpy(variant), reference)
    a, b = variant.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    assert figures.relative_l2 == pytest.approx(np.linalg.norm(a - b) / np.linalg.norm(b), rel=1e-5)
    assert 1 - figures.cosine == pytest.approx(1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-3)
    assert figures.max_abs == pytest.approx(np.abs(a - b).max(), rel=1e-6)
    assert figures.normalised == pytest.approx(np.abs(a - b).max() / np.abs(b).max(), rel=1e-6)
    variant[1, 5] = np.inf
    broken = error_figures(torch.from_numpy(variant), reference)
    assert broken.relative_l2 == math.inf and broken.non_finite == 1 and broken.figure("cosine") is None
    assert to_json(broken).keys() == {"relative_l2", "cosine", "max_abs", "normalised", "non_finite"}
    same = error_figures(torch.full((10,), 2.5), torch.full((10,), 2.5))
    assert same == ErrorFigures(relative_l2=0.0, cosine=1.0, max_abs=0.0, normalised=0.0)


def test_the_suggestion_tries_sets_of_1_2_3_5_8_modules_then_all():
    assert prefix_sizes(0) == [] and prefix_sizes(1) == [1] and prefix_sizes(4) == [1, 2, 3, 4]
    assert prefix_sizes(20) == [1, 2, 3, 5, 8, 13, 20]


def test_torch_compile_is_unsupported_with_the_reason():
    from vision_bench.divergence.divergence_pass import hooked_variant

    bench = Bench(nn.Linear(2, 2), torch.zeros(1, 2))
    with pytest.raises(VariantUnsupported, match="fuses the leaf modules"):
        hooked_variant(bench, "torch-compile")


BOUNDED = textwrap.dedent("""
    import json, resource, sys, torch
    from torch import nn
    sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
    from test_divergence import Bench
    from vision_bench.divergence.layer_passes import HookedVariant, run_divergence
    from vision_bench.measure.memory import MemoryTracker

    class Scale(nn.Module):
        def forward(self, x):
            return x * 1.001

    torch.set_grad_enabled(False)
    bench = Bench(nn.Sequential(*[Scale() for _ in range(24)]), torch.randn(4096, 4096))   # 64 MB a layer
    tracker = MemoryTracker(torch.device("cpu"))
    bench.run_pipeline(None)
    tracker.reset_peak()
    bench.run_pipeline(None)
    plain = tracker.peak_reading().cpu_peak_rss_bytes
    tracker.reset_peak()
    out = run_divergence(bench, HookedVariant("same", 1e-4), None, scratch={scratch!r})
    print(json.dumps({{"plain": plain, "divergence": tracker.peak_reading().cpu_peak_rss_bytes,
                      "spilled": out.spilled_bytes, "compared": out.compared}}))
""")


def test_a_network_of_large_activations_stays_within_the_spill_queue_and_a_few_activations(tmp_path):
    """24 layers of 64 MB (1.5 GB of activations): the divergence passes' peak, measured in a process of its
    own, stays within the plain forward's peak plus the spill queue (64 MB) plus four activations."""
    from vision_bench.divergence.reference_store import SPILL_QUEUE_BYTES

    script = BOUNDED.format(tests=str(ROOT / "tests"), root=str(ROOT), scratch=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    activation = 4096 * 4096 * 4
    assert figures["compared"] == 24 and figures["spilled"] == 24 * activation
    assert figures["divergence"] - figures["plain"] < SPILL_QUEUE_BYTES + 4 * activation, figures
    assert not list(tmp_path.iterdir())  # the scratch folder is gone


def test_divergence_without_a_variant_to_compare_is_a_usage_error(tmp_path):
    done = run_cli("--weights", "random", "--models", "yolo11n-detect", "--divergence", "--output-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--divergence compares variants with torch-fp32: it needs --variants" in done.stderr


def test_the_command_line_names_the_culprit_suggests_keeping_it_in_fp32_and_compares_a_real_model(tmp_path):
    """Through the command line: a test model whose one OffsetLinear bfloat16 ruins (torch-bf16 fails parity)
    and yolo11n-detect. The culprit is named, keeping it alone in fp32 passes parity and is timed; every
    record of the real model is compared in both modes; the scratch folder is gone."""
    worker_models = ROOT / "tests" / "worker_models.py"
    done = subprocess.run(
        [
            sys.executable,
            str(worker_models),
            "--weights",
            "random",
            "--models",
            "halffragile,yolo11n-detect",
            "--variants",
            "torch-bf16,torch-channels-last,onnxruntime",
            "--divergence",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--no-dissect",
            "--output-dir",
            str(tmp_path),
            "--models-dir",
            str(tmp_path / "models"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "first divergent layer #3 3 (call 1, OffsetLinear)" in done.stdout
    [results] = (tmp_path / "results").glob("benchmark_results_*.json")
    fragile, yolo = json.loads(results.read_text())["models"]
    bf16, channels_last, onnx = fragile["divergence"]
    # the default torch.onnx export (issue 30): ONNX Runtime's fp32 sums reorder OffsetLinear's cancellation too
    assert onnx["status"] == "complete" and onnx["first_divergent"]["name"] == "3"
    assert bf16["status"] == "complete" and bf16["first_divergent"]["name"] == "3"
    assert [r["name"] for r in bf16["records"]] == ["0", "1", "2", "3", "4", "5"]
    suggestion = bf16["suggestion"]
    assert suggestion["plain"]["verdict"] == "fail"
    assert suggestion["status"] == "passes" and suggestion["modules"] == ["3"]
    assert suggestion["parity"]["verdict"] == "pass" and suggestion["latency_forward"]["n"] == 4
    assert suggestion["speedup_forward"] > 0
    assert channels_last["status"] == "complete" and "suggestion" not in channels_last
    yolo_onnx = yolo["divergence"][2]
    assert yolo_onnx["status"] == "complete" and yolo_onnx["modes"] == ["propagated"]
    assert yolo_onnx["compared"] == 174 and yolo_onnx["onnx"]["unmapped"] == 4  # four Identity activations
    assert max(r["propagated"]["relative_l2"] for r in yolo_onnx["records"] if "propagated" in r) < 1e-4
    for entry in yolo["divergence"][:2]:
        assert entry["status"] == "complete", entry.get("reason")
        assert len(entry["records"]) == entry["compared"] == 178
        assert all("propagated" in r for r in entry["records"])
        # every record has its own error too: the Identity activations of model.10 alias their input
        # (their shadow call gets copies); an in-place module would be the one exception, with its reason
        assert all("shadow" in r for r in entry["records"]), [r.get("note") for r in entry["records"]]
        assert entry["memory"]["peak_bytes"] > 0 and entry["spilled_bytes"] > 0
    yolo_bf16 = yolo["divergence"][0]
    assert yolo_bf16["suggestion"]["status"] in ("not needed", "passes", "no small set")
    assert not list((tmp_path / "results").glob("divergence-*"))
    [report] = (tmp_path / "results").glob("benchmark_report_*.md")
    text = report.read_text()
    assert "### Where the variants diverge" in text and "first divergent layer #3 `3` (call 1, OffsetLinear)" in text
    assert "Suggestion: torch-bf16 with this module in fp32" in text, text[
        text.index("### Where the variants diverge") :
    ][:3000]
    assert list((tmp_path / "results").glob("report_*/HalfFragile_divergence_torch-bf16.png"))


def test_an_in_place_module_gets_no_shadow_call_and_the_reference_it_aliases_stays_intact():
    torch.manual_seed(3)
    network = nn.Sequential(nn.Linear(8, 8), nn.SiLU(inplace=True), nn.Identity(), nn.Flatten(), nn.Linear(8, 2))
    out = run_divergence(Bench(network, torch.randn(4, 8)), HookedVariant("same", TOLERANCE), image=None)
    records = by_key(out)
    assert records["1", 1].shadow is None and "in-place" in records["1", 1].note
    assert own(records["2", 1]) == 0 and own(records["3", 1]) == 0  # Identity and Flatten: copies
    assert all(inherited(r) == 0 for r in out.records)


class OwnOperations(nn.Module):
    """A container whose forward does arithmetic of its own between its two leaves: the offset trick of
    OffsetLinear as a plain matmul, which no leaf owns."""

    def __init__(self, n: int):
        super().__init__()
        self.before, self.after = nn.Linear(n, n), nn.Linear(n, n)
        self.weight = nn.Parameter(torch.randn(n, n) / n**0.5)

    def forward(self, x):
        y = self.before(x)
        offset = torch.full_like(y, 1000.0)
        return self.after(torch.matmul(y + offset, self.weight) - torch.matmul(offset, self.weight))


def test_an_error_made_between_the_leaves_is_owned_by_its_container_and_a_pure_composition_owns_none():
    torch.manual_seed(4)
    network = nn.Sequential(nn.Linear(16, 16), OwnOperations(16), nn.ReLU(), nn.Linear(16, 4))
    tolerance = 2 * 2**-7
    out = run_divergence(
        Bench(network, torch.randn(8, 16)), AutocastVariant("torch-bf16", torch.bfloat16, tolerance), image=None
    )
    assert all(own(r) < tolerance for r in out.records)  # no leaf is to blame
    ops = {r.name: r for r in out.ops_records}
    assert set(ops) == {"1", "Sequential"} and ops["1"].after == 2  # it returned after its leaf `1.after`
    assert own(ops["1"]) > 10 * tolerance
    assert own(ops["Sequential"]) == 0  # it only calls its children
    first = out.first_divergent
    assert (first.name, first.kind, first.index) == ("1", "ops", 2)
    assert first.type == "OwnOperations (its own operations)"
    assert candidate_modules(out.records + out.ops_records, tolerance) == ["1"]


def test_keeping_a_module_with_an_instance_forward_in_fp32_and_back_keeps_that_forward():
    """ultralytics' fused Conv blocks carry `forward = forward_fuse` on the instance: an fp32 override and
    its removal must compute with it and leave it in place."""
    from vision_bench.divergence.layer_passes import fp32_forward, install_overrides, remove_overrides

    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Linear(4, 4)

        def forward(self, x):
            raise AssertionError("the unfused forward")

        def forward_fuse(self, x):
            return self.conv(x) * 2

    network = nn.Sequential(Fused())
    network[0].forward = network[0].forward_fuse
    x = torch.randn(2, 4)
    expected = network(x)
    install_overrides(network, {"0": fp32_forward})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = network(x)
    assert kept.dtype == torch.float32 and torch.equal(kept, expected)
    remove_overrides(network, ["0"])
    assert network[0].forward == network[0].forward_fuse and torch.equal(network(x), expected)
