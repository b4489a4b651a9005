"""Variants (--variants): the ONNX path against PyTorch on a non-square photo, the letterbox trap
caught by the verdict, unsupported variants as rows, the export cache, a run through the CLI, and a
variant of a test's own registered as a plugin."""

import csv
from pathlib import Path

import pytest
import torch
from conftest import load_run
from worker_models import TinyConvBenchmark

from vision_bench.common import UsageError
from vision_bench.records.codec import to_json
from vision_bench.variants.channels_last import TorchChannelsLast
from vision_bench.variants.onnxruntime import export_path
from vision_bench.variants.output_parity import compare_outputs
from vision_bench.variants.registry import REFERENCE_VARIANT, parse_variants, prepare_variant
from vision_bench.variants.torch_precision import TorchBf16

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bus():
    from ultralytics.utils import ASSETS

    from vision_bench.images import load_rgb

    return [(ASSETS / "bus.jpg", load_rgb(ASSETS / "bus.jpg"))]  # 810x1080: not square


def loaded(cls, models_dir):
    from vision_bench.common import seed_everything

    seed_everything(42)
    bench = cls(CPU, weights="random", models_dir=models_dir)
    bench.load()
    return bench


def outputs(bench, images):
    from vision_bench.variants.output_parity import parity_outputs

    return parity_outputs(bench, images)


def test_parse_variants_puts_the_reference_first_and_refuses_unknown_names():
    assert parse_variants(None) == [REFERENCE_VARIANT]
    assert parse_variants("onnxruntime,torch-bf16,onnxruntime") == ["torch-fp32", "onnxruntime", "torch-bf16"]
    assert parse_variants("torch-bf16,torch-fp32") == ["torch-fp32", "torch-bf16"]
    with pytest.raises(UsageError, match="unknown variant 'tensorrt'"):
        parse_variants("torch-fp32,tensorrt")


def test_onnx_export_of_yolo_matches_pytorch_and_a_square_letterbox_fails(ub, tmp_path, bus):
    """The exported model through ultralytics' own predictor sees the same letterboxed input as the
    .pt path (dynamic axes) and agrees with it; exported at a fixed 640x640, the predictor letterboxes
    the photo square, the prototype's ONNX bug, and the verdict fails it."""
    cls = ub.YOLO11nDetectBenchmark
    reference_bench = loaded(cls, tmp_path)
    reference = outputs(reference_bench, bus)
    reference_bench.release()

    onnx_bench = loaded(cls, tmp_path)
    details = prepare_variant(onnx_bench, "onnxruntime", bus)
    assert details.provider == "CPUExecutionProvider" and not details.cached
    parity = compare_outputs(onnx_bench, "onnxruntime", reference, outputs(onnx_bench, bus))
    raw = parity.per_image[0].raw
    assert {p.part for p in raw.parts} == {"boxes", "scores"}
    assert parity.verdict == "pass", parity.reasons
    assert parity.worst.normalised_error < 1e-3

    class SquareLetterbox(cls):
        ONNX_DYNAMIC = False  # fixed 640x640 input: ultralytics letterboxes every image square

    square = loaded(SquareLetterbox, tmp_path)
    prepare_variant(square, "onnxruntime", bus)
    wrong = compare_outputs(square, "onnxruntime", reference, outputs(square, bus))
    assert wrong.verdict == "fail"
    assert wrong.per_image[0].raw.shape_mismatch


def test_the_export_cache_is_reused_and_keyed_by_input_size(ub, tmp_path, bus):
    cls = ub.YOLO11nDetectBenchmark
    first = prepare_variant(loaded(cls, tmp_path), "onnxruntime", bus)
    assert first.cached is False and first.export_seconds is not None and first.export_seconds > 0
    assert first.files is not None
    [path] = map(Path, first.files)
    assert path == export_path(loaded(cls, tmp_path), "dynamic-640")
    assert path.exists() and path.is_relative_to(tmp_path / "exported" / cls.MODEL_NAME)
    before = path.stat().st_mtime_ns

    again = prepare_variant(loaded(cls, tmp_path), "onnxruntime", bus)
    assert again.cached is True and again.export_seconds is None and again.files == first.files
    assert "export_seconds" not in to_json(again)
    assert path.stat().st_mtime_ns == before

    class Smaller(cls):
        INPUT_SIZE = 320

    smaller = prepare_variant(loaded(Smaller, tmp_path), "onnxruntime", bus)
    assert smaller.cached is False and smaller.files != first.files


def test_a_transformers_model_is_exported_per_input_shape_and_matches_pytorch(ub, tmp_path):
    """Depth Anything computes its patch grid from the input size in Python: one export per shape the
    processor gives (two photos of different aspect, two files), each matching PyTorch."""
    from PIL import Image

    class TinyDepthAnything(ub.DepthAnythingV2SmallBenchmark):
        HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 32, 4, 2, [1, 2, 3, 4]
        FUSION_SIZE, NECK_SIZES = 16, [8, 16, 32, 32]

    images = [
        (Path("tall.jpg"), Image.new("RGB", (300, 400), (90, 30, 10))),
        (Path("wide.jpg"), Image.effect_noise((500, 280), 60).convert("RGB")),
    ]
    reference_bench = loaded(TinyDepthAnything, tmp_path)
    reference = outputs(reference_bench, images)
    reference_bench.release()
    bench = loaded(TinyDepthAnything, tmp_path)
    details = prepare_variant(bench, "onnxruntime", images)
    assert details.files is not None
    assert len(details.files) == 2 and all(Path(f).exists() for f in details.files)
    shapes = sorted("x".join(map(str, bench.preprocess(im)["pixel_values"].shape)) for _, im in images)
    assert shapes[0] != shapes[1]
    assert sorted(Path(f).name.split("-")[1] for f in details.files) == shapes
    parity = compare_outputs(bench, "onnxruntime", reference, outputs(bench, images))
    assert parity.verdict == "pass", parity.reasons
    assert [img.raw.shape_mismatch for img in parity.per_image] == [False, False]
    assert parity.worst.normalised_error < 1e-4


def test_a_model_with_a_converter_failure_gets_an_unsupported_row_and_the_run_goes_on(
    ub, tmp_path, sample_image, monkeypatch
):
    """TinyConv has no export of its own: the default torch.onnx export runs it; OpenVINO's converter,
    made to fail, makes openvino an `unsupported` row with the converter's reason."""
    import openvino

    def refuse(*args, **kwargs):
        raise RuntimeError("Check 'op' failed: no converter for operation TinyOp\nsecond line of the trace")

    monkeypatch.setattr(openvino, "convert_model", refuse)
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, TinyConvBenchmark.CLI_NAME, TinyConvBenchmark)
    code = ub.main(
        [
            "--models",
            "tinyconv",
            "--weights",
            "random",
            "--runs",
            "2",
            "--no-dissect",
            "--isolation",
            "none",
            "--variants",
            "openvino,torch-channels-last,onnxruntime",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
            "--models-dir",
            str(tmp_path / "models"),
        ]
    )
    assert code == 0
    run = load_run(tmp_path)
    [model] = run["json"]["models"]
    assert model["status"] == "complete"
    rows = {v["variant"]: v for v in model["variants"]}
    assert list(rows) == ["torch-fp32", "openvino", "torch-channels-last", "onnxruntime"]
    assert rows["openvino"]["status"] == "unsupported"
    assert rows["openvino"]["reason"] == (
        "OpenVINO could not convert "
        + Path(rows["onnxruntime"]["details"]["files"][0]).name
        + ": RuntimeError: Check 'op' failed: no converter for operation TinyOp"
    )
    assert rows["onnxruntime"]["status"] == "complete" and rows["onnxruntime"]["parity"]["verdict"] == "pass"
    channels_last = rows["torch-channels-last"]
    assert channels_last["status"] == "complete" and channels_last["parity"]["verdict"] == "pass"
    assert len([r for r in channels_last["runs"] if r["kind"] == "timed"]) == 2
    md = run["md_path"].read_text()
    assert "### Variants" in md and "| openvino | unsupported |" in md
    with open(run["csv_path"], newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["variant"] for r in csv_rows] == ["torch-fp32", "openvino", "torch-channels-last", "onnxruntime"]


class TorchChannelsLastBf16(TorchBf16):
    """README's example of a new variant (a module of its own plus one registry line), here test-only."""

    name = "torch-channels-last-bf16"
    description = "autocast to bfloat16 around a channels-last network"

    def prepare(self, bench, images):
        return TorchChannelsLast().prepare(bench, images) | super().prepare(bench, images)


def test_a_variant_registered_as_a_plugin_runs_through_the_cli(ub, tmp_path, sample_image, monkeypatch):
    """One class and one registry entry: --variants knows the name, the variants pass prepares and
    times it, parity judges it by its class's limits (half precision: bf16's) and --divergence hooks it
    as its base class does."""
    from vision_bench.variants import registry

    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, TinyConvBenchmark.CLI_NAME, TinyConvBenchmark)
    monkeypatch.setitem(registry.VARIANTS, TorchChannelsLastBf16.name, TorchChannelsLastBf16())
    assert parse_variants("torch-channels-last-bf16") == ["torch-fp32", "torch-channels-last-bf16"]
    code = ub.main(
        ["--models", "tinyconv", "--weights", "random", "--runs", "2", "--no-dissect", "--isolation", "none"]
        + ["--variants", "torch-channels-last-bf16", "--divergence", "--images", str(sample_image)]
        + ["--output-dir", str(tmp_path)]
    )
    assert code == 0
    [model] = load_run(tmp_path)["json"]["models"]
    row = {v["variant"]: v for v in model["variants"]}["torch-channels-last-bf16"]
    assert row["status"] == "complete" and row["description"] == TorchChannelsLastBf16.description
    assert row["details"] == {"memory_format": "channels_last", "autocast_dtype": "bfloat16"}
    assert row["parity"]["tolerance"] == "half precision" and row["parity"]["verdict"] in ("pass", "fail")
    assert len([r for r in row["runs"] if r["kind"] == "timed"]) == 2
    [entry] = model["divergence"]
    assert entry["variant"] == "torch-channels-last-bf16" and entry["status"] == "complete", entry.get("reason")
    assert entry["tolerance"] == TinyConvBenchmark.DIVERGENCE_TOLERANCE["bfloat16"]
