"""Every variant and both sweeps for a model that implements only network(), preprocess, forward and
postprocess: the "Adding a model" example (tests/readme_example.py, checked against
docs/adding-a-model.md), run through the command line with every --variants name and both sweeps."""

import inspect
from pathlib import Path

import torch
from conftest import load_run
from readme_example import ResNet50Benchmark, TinyReadmeExample

from vision_bench.variants.registry import VARIANTS

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_is_the_readmes_own():
    """The class the tests run is the guide's (docs/adding-a-model.md), character for character (its imports aside)."""
    source = inspect.getsource(ResNet50Benchmark)
    readme = (ROOT / "docs" / "adding-a-model.md").read_text()
    normalise = [
        line.replace("ResNet50_Weights, resnet50", "resnet50, ResNet50_Weights") for line in source.splitlines()
    ]
    assert "\n".join(normalise) in readme


def test_a_model_with_only_the_four_methods_gets_every_variant_and_both_sweeps(ub, tmp_path, sample_image, monkeypatch):
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, TinyReadmeExample.CLI_NAME, TinyReadmeExample)
    # torch-fp16: no fp16 kernels on every CPU; torch-compile: inductor's minute of compiling (its
    # default, network().compile(), is run in the note's measurement of the README's own example)
    variants = [name for name in VARIANTS if name not in ("torch-fp16", "torch-compile")]
    code = ub.main(
        [
            "--models",
            TinyReadmeExample.CLI_NAME,
            "--weights",
            "random",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--no-dissect",
            "--isolation",
            "none",
            "--variants",
            ",".join(variants),
            "--batch-sizes",
            "1,2",
            "--input-sizes",
            "48,64",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path / "out"),
            "--models-dir",
            str(tmp_path / "models"),
        ]
    )
    assert code == 0
    [model] = load_run(tmp_path / "out")["json"]["models"]
    rows = {v["variant"]: v for v in model["variants"]}
    assert set(rows) == set(variants)
    for name, row in rows.items():
        if row.get("reference"):
            continue
        if name == "openvino-bf16" and row["status"] == "unsupported":
            assert "not bf16" in row["reason"]  # a CPU without AVX512-BF16 or AMX
            continue
        assert row["status"] == "complete", (name, row.get("reason"))
        assert row["parity"]["verdict"] == "pass", (name, row["parity"]["reasons"])
        assert len([r for r in row["runs"] if r["kind"] == "timed"]) == 2
    assert rows["openvino"]["details"]["provider"] == "OpenVINO CPU, f32 inference"
    for name in ("openvino-int8", "onnxruntime-int8"):
        assert rows[name]["parity"]["tolerance"] == "int8"
        assert rows[name]["details"]["calibration"].startswith(f"{TinyReadmeExample.CALIBRATION_SIZE} sample(s)")
    sweep = model["sweep"]
    assert sweep["unsupported"] == {}
    points = [(p["dimension"], p["value"], p["status"]) for p in sweep["points"]]
    assert points == [("input_size", 48, "ok"), ("input_size", 64, "ok"), ("batch", 1, "ok"), ("batch", 2, "ok")]


def test_the_default_batch_stacks_preprocessed_inputs_and_splits_the_outputs(tmp_path):
    from PIL import Image

    bench = TinyReadmeExample(torch.device("cpu"), weights="random", models_dir=tmp_path)
    bench.load()
    images = [Image.new("RGB", (90, 70), (i * 60, 20, 200)) for i in range(3)]
    predictions, phases = bench.run_batch(images, 48)
    assert len(predictions) == 3 and set(phases) == {"preprocess", "forward", "postprocess"}
    batch = bench.preprocess_batch(images, 48)
    assert batch.shape == (3, 3, 48, 48)
    alone = bench.postprocess(bench.forward(bench.preprocess_batch(images[1:2], 48)), images[1])
    assert torch.allclose(predictions[1].values, alone.values, atol=1e-5)
    assert torch.equal(predictions[1].indices, alone.indices)
