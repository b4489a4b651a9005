"""--divergence through the OpenVINO and INT8 variants on a tiny network (exported, converted, quantised,
run in seconds): each leaf call's propagated error read from the variant's own runtime, the QDQ graph
read after its DequantizeLinear, and the figures cross-checked against ONNX Runtime's qdq_loss_debug."""

import math
import sys

import pytest
import torch
from conftest import ROOT
from PIL import Image
from readme_example import TinyReadmeExample

from vision_bench.common import seed_everything
from vision_bench.divergence.divergence_pass import hooked_variant
from vision_bench.divergence.layer_passes import run_divergence

sys.path.insert(0, str(ROOT / "benchmarks"))
import int8_divergence  # noqa: E402  (the benchmark's cross-check, run here on the tiny network)


def picture(width=90, height=70, shade=0):
    image = Image.new("RGB", (width, height), (shade, 40, 200))
    image.paste((255, 255 - shade, 0), (5, 5, 30, 20))
    return image


PICTURES = [picture(), picture(70, 90, 120)]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")  # one export, converted and quantised once for every test


def loaded(models_dir):
    seed_everything(0)
    bench = TinyReadmeExample(torch.device("cpu"), weights="random", models_dir=models_dir)
    bench.load()
    return bench


def diverge(models_dir, variant):
    bench = loaded(models_dir)
    hooked = hooked_variant(bench, variant, PICTURES)
    return bench, hooked, run_divergence(bench, hooked, PICTURES[0])


@pytest.mark.parametrize("variant", ["openvino", "openvino-bf16", "openvino-int8", "onnxruntime-int8"])
def test_each_new_variant_gets_the_propagated_error_of_its_leaf_calls(models_dir, variant):
    import openvino

    default = str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    if variant == "openvino-bf16" and "bf16" not in default and "bfloat16" not in default:
        pytest.skip("OpenVINO's default here is not bf16")
    _, hooked, entry = diverge(models_dir, variant)
    assert entry.culprit_by == "propagated" and entry.modes == ["propagated"]
    compared = [r for r in entry.records if r.inherited is not None]
    assert len(compared) == entry.compared >= len(entry.records) // 2
    unmapped = [r for r in entry.records if r.inherited is None]
    assert all(r.onnx_unmapped for r in unmapped)  # each record without a value says why
    assert entry.onnx.runs.runs >= 1 and entry.file.endswith(".xml" if "openvino" in variant else ".onnx")
    worst = max(r.inherited for r in compared)
    if variant == "openvino":
        assert worst < 1e-4 and entry.first_divergent is None  # f32: the torch figures, to rounding
        assert entry.onnx.largest_rise is None  # nothing over the tolerance: no step to name
    elif variant == "openvino-bf16":
        assert 1e-4 < worst < 0.05
    else:
        assert "int8" in entry.file and 1e-3 < worst < 1  # quantised, not broken
        assert entry.tolerance == TinyReadmeExample.DIVERGENCE_TOLERANCE["int8"]
        rise = entry.onnx.largest_rise
        assert rise is not None and rise.propagated > entry.tolerance and rise.rise > 0
        if entry.first_divergent is not None:  # the culprit is the first record over the tolerance
            first = next(r for r in entry.records if (r.inherited or 0) > entry.tolerance)
            assert (entry.first_divergent.name, entry.first_divergent.call) == (first.name, first.call)


@pytest.mark.parametrize("variant", ["onnxruntime-int8", "openvino"])
def test_the_quantised_value_is_read_and_a_small_budget_only_adds_runs(models_dir, variant):
    import onnx

    from vision_bench.divergence.runtime_values import OnnxRuntimeValues, dequantised

    bench, hooked, entry = diverge(models_dir, variant)
    if variant == "onnxruntime-int8":
        _, qdq_path = next(iter(hooked.files(bench, [PICTURES[0]], PICTURES).values()))
        model = onnx.load(str(qdq_path))
        after = dequantised(model)
        made_by = {out: n.op_type for n in model.graph.node for out in n.output}
        assert after and {made_by[v] for v in after.values()} == {"DequantizeLinear"}
        values = OnnxRuntimeValues(model, {model.graph.input[0].name: hooked.inputs[0]})
        assert values.resolve(list(after)) == after  # each quantised value read as the next layer sees it
    small = hooked_variant(bench, variant, PICTURES)
    small.budget = 1  # one value a run
    again = run_divergence(loaded(models_dir), small, PICTURES[0])
    assert again.onnx.runs.runs == again.compared > entry.onnx.runs.runs
    # OpenVINO compiles each group's graph afresh, and another set of outputs can fuse differently: f32
    # agrees to rounding (openvino-int8 figures moved by up to 11% of themselves here, docs/divergence.md)
    same = pytest.approx([r.inherited for r in entry.records], rel=1e-6, abs=1e-6 if "openvino" in variant else 0)
    assert [r.inherited for r in again.records] == same


def test_the_propagated_errors_agree_with_onnx_runtimes_qdq_loss_debug(models_dir, tmp_path):
    import onnx

    bench, hooked, entry = diverge(models_dir, "onnxruntime-int8")
    float_path, qdq_path = next(iter(hooked.files(bench, [PICTURES[0]], PICTURES).values()))
    feeds = {onnx.load(str(float_path)).graph.input[0].name: hooked.inputs[0]}
    ours = int8_divergence.ours_by_tensor(bench, entry, float_path, feeds)
    theirs, _ = int8_divergence.theirs(float_path, qdq_path, feeds, tmp_path)
    both = set(ours) & set(theirs)
    assert len(both) >= len(ours) // 2 > 5
    for tensor in both:
        assert math.isclose(ours[tensor][1], theirs[tensor], rel_tol=0.1), (tensor, ours[tensor], theirs[tensor])
    worst_ours = sorted(both, key=lambda t: -ours[t][1])[:10]
    worst_theirs = sorted(both, key=lambda t: -theirs[t])[:10]
    assert len(set(worst_ours) & set(worst_theirs)) >= 8  # the same set, ties aside


def test_a_layer_planted_in_the_quantised_graph_only_is_the_largest_rise(models_dir, tmp_path):
    import onnx

    from vision_bench.divergence.onnx_intermediates import ExportedVariant
    from vision_bench.divergence.runtime_values import dequantised
    from vision_bench.variants.onnxruntime_int8 import open_quantised

    bench, hooked, entry = diverge(models_dir, "onnxruntime-int8")
    float_path, qdq_path = next(iter(hooked.files(bench, [PICTURES[0]], PICTURES).values()))
    feeds = {onnx.load(str(float_path)).graph.input[0].name: hooked.inputs[0]}
    ours = int8_divergence.ours_by_tensor(bench, entry, float_path, feeds)
    quantised = dequantised(onnx.load(str(qdq_path)))
    candidates = [v for v in ours if v in quantised]
    value = candidates[len(candidates) // 2]  # mid-depth, past where INT8's own rounding passes the tolerance
    planted = tmp_path / "planted.onnx"
    int8_divergence.planted_copy(qdq_path, value, 3.0, planted)  # the value the next layers read, times 3
    variant = ExportedVariant("planted", entry.tolerance, lambda *a: {"p": (float_path, planted)}, open_quantised)
    again = run_divergence(loaded(models_dir), variant, PICTURES[0])
    rise = again.onnx.largest_rise
    assert f"{rise.name}#{rise.call}" == ours[value][0] and rise.rise > 10
    assert "the largest rise of the propagated error" in again.level_note
    from vision_bench.divergence.divergence_report import culprit_sentence

    assert f"largest rise of the propagated error over its inputs': `{rise.name}` (call {rise.call})" in (
        culprit_sentence(again)
    )  # in the culprit's own line, where the report's reader looks first
    by_key = {(r.name, r.call): r for r in again.records}
    assert by_key[(rise.name, rise.call)].inherited == pytest.approx(2.0, rel=0.1)  # |3 - 1|, give or take INT8
