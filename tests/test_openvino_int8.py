"""The OpenVINO and INT8 variants on a tiny network (exported, converted, quantised, run in seconds):
parity and what each reports, the calibration set's construction, the ignored scope, and the
`unsupported` paths (a converter or quantiser that fails, a CPU whose default precision is not bf16)."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from readme_example import TinyReadmeExample

from vision_bench.common import VariantUnsupported, seed_everything
from vision_bench.variants.calibration import TRANSFORMS, calibration_set
from vision_bench.variants.output_parity import compare_outputs, parity_outputs
from vision_bench.variants.quantisation_scope import QuantisationScope
from vision_bench.variants.registry import prepare_variant


def picture(width=90, height=70, shade=0):
    image = Image.new("RGB", (width, height), (shade, 40, 200))
    image.paste((255, 255 - shade, 0), (5, 5, 30, 20))  # something for the flips and crops to move
    return image


@pytest.fixture(scope="module")
def images():
    return [(Path("a.jpg"), picture()), (Path("b.jpg"), picture(70, 90, 120))]


def loaded(tmp_path, cls=TinyReadmeExample):
    seed_everything(0)
    bench = cls(torch.device("cpu"), weights="random", models_dir=tmp_path)
    bench.load()
    return bench


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    return parity_outputs(loaded(tmp_path_factory.mktemp("reference")), images)


def run_variant(name, images, reference, tmp_path, cls=TinyReadmeExample):
    bench = loaded(tmp_path, cls)
    details = prepare_variant(bench, name, images)
    return details, compare_outputs(bench, name, reference, parity_outputs(bench, images))


def test_the_calibration_set_is_the_images_then_flips_and_crops_in_a_fixed_order():
    one = [picture()]
    chosen = calibration_set(one, 5)
    assert chosen.transforms == [name for name, _ in TRANSFORMS[:5]] and len(chosen.samples) == 5
    assert chosen.description.startswith("5 sample(s) from 1 image(s): original, horizontal flip, centre crop 80%")
    assert chosen.samples[0].tobytes() == one[0].tobytes()
    assert chosen.samples[1].tobytes() == one[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    assert chosen.samples[2].size == (72, 56)  # 80% of 90x70, centred
    again = calibration_set(one, 5)
    assert [s.tobytes() for s in again.samples] == [s.tobytes() for s in chosen.samples]  # deterministic
    two = calibration_set([picture(), picture(shade=90)], 3)
    assert two.transforms == ["original", "horizontal flip"] and len(two.samples) == 3
    enough = calibration_set([picture(shade=i) for i in range(4)], 3)
    assert enough.transforms == ["original"] and len(enough.samples) == 3  # no augmentation when not needed
    with pytest.raises(VariantUnsupported, match="needs images"):
        calibration_set([], 8)


def test_openvino_pins_f32_and_agrees_with_pytorch(images, reference, tmp_path):
    details, parity = run_variant("openvino", images, reference, tmp_path)
    assert details.provider == "OpenVINO CPU, f32 inference"
    assert details.files[0].endswith("-fp32_openvino_model/model.xml")
    assert parity.verdict == "pass" and parity.tolerance == "fp32"
    assert parity.worst.normalised_error < 1e-4


def test_openvino_bf16_is_openvinos_default_where_that_is_bf16(images, reference, tmp_path, monkeypatch):
    import openvino

    default = str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    if "bf16" in default or "bfloat16" in default:
        details, parity = run_variant("openvino-bf16", images, reference, tmp_path)
        assert details.provider == "OpenVINO CPU, bf16 inference" and parity.tolerance == "half precision"
        assert 0 < parity.worst.normalised_error < 3e-2  # rounded to bf16 somewhere, not broken

    class F32Only(openvino.Core):
        def get_property(self, device, name):
            return {"INFERENCE_PRECISION_HINT": "f32", "OPTIMIZATION_CAPABILITIES": ["FP32", "INT8"]}[name]

    monkeypatch.setattr(openvino, "Core", F32Only)
    with pytest.raises(
        VariantUnsupported, match=r"default inference precision on this CPU is f32, not bf16 .*FP32, INT8"
    ):
        prepare_variant(loaded(tmp_path), "openvino-bf16", images)


@pytest.mark.parametrize("variant", ["openvino-int8", "onnxruntime-int8"])
def test_the_int8_variants_quantise_and_are_held_to_the_int8_limits(variant, images, reference, tmp_path):
    details, parity = run_variant(variant, images, reference, tmp_path)
    assert parity.tolerance == "int8" and parity.limits == TinyReadmeExample.INT8_TOLERANCE
    assert parity.verdict == "pass", parity.reasons
    assert 0 < parity.worst.normalised_error < TinyReadmeExample.INT8_TOLERANCE["normalised_error"]
    assert details.calibration.startswith(f"{TinyReadmeExample.CALIBRATION_SIZE} sample(s) from 2 image(s)")
    assert details.float_nodes == 0
    [path] = details.files
    quantised = open(path).read() if path.endswith(".xml") else None
    if quantised is not None:
        assert "FakeQuantize" in quantised
    else:
        import onnx

        assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(path).graph.node}


class ScopedExample(TinyReadmeExample):
    """The last residual stage left in float."""

    MODEL_NAME = "ScopedExample"
    INT8_IGNORED_SCOPE = QuantisationScope(patterns=(r"/layer4/.*",), reason="test")


def test_the_ignored_scope_keeps_its_nodes_in_float(images, reference, tmp_path):
    import onnx

    details, _ = run_variant("onnxruntime-int8", images, reference, tmp_path, ScopedExample)
    graph = onnx.load(details.files[0]).graph
    qdq = ("QuantizeLinear", "DequantizeLinear")  # the quantiser's own, named after the tensors they round
    layer4 = [n for n in graph.node if n.name.startswith("/layer4/") and n.op_type not in qdq]
    assert details.float_nodes == len(layer4) > 0
    weights = {n.input[1] for n in layer4 if n.op_type == "Conv"}
    dequantised = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert weights and not weights & dequantised  # layer4's convolutions read float weights
    assert any(n.op_type == "Conv" and n.input[1] in dequantised for n in graph.node)  # the others int8


def test_a_quantiser_that_fails_makes_the_variant_unsupported_with_its_first_line(images, tmp_path, monkeypatch):
    import nncf
    import onnxruntime.quantization as ort_quantization

    def refuse(*args, **kwargs):
        raise ValueError("Unsupported operation: TinyOp\n  at line 3 of the graph")

    monkeypatch.setattr(nncf, "quantize", refuse)
    monkeypatch.setattr(ort_quantization, "quantize_static", refuse)
    with pytest.raises(VariantUnsupported) as nncf_failure:
        prepare_variant(loaded(tmp_path), "openvino-int8", images)
    assert str(nncf_failure.value) == "NNCF could not quantise the model: ValueError: Unsupported operation: TinyOp"
    with pytest.raises(VariantUnsupported) as ort_failure:
        prepare_variant(loaded(tmp_path), "onnxruntime-int8", images)
    assert str(ort_failure.value).startswith("ONNX Runtime could not quantise onnx-")
    assert str(ort_failure.value).endswith(": ValueError: Unsupported operation: TinyOp")
