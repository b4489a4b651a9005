"""The pretrained path is real code: a random model saved to disk in the library's own
format loads back through exactly the path a user's run takes."""

import pytest
import torch
from conftest import load_run, run_cli

from vision_bench.common import WeightsError
from vision_bench.images import load_rgb

CPU = torch.device("cpu")


def test_yolo_pt_file_loads_through_the_cli(tmp_path, sample_image):
    from ultralytics import YOLO

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    YOLO("yolo11n.yaml", verbose=False).save(models_dir / "yolo11n.pt")  # ultralytics' checkpoint format
    out = tmp_path / "out"
    proc = run_cli(
        "--weights",
        "pretrained",
        "--models-dir",
        models_dir,
        "--models",
        "yolo11n-detect",
        "--runs",
        "1",
        "--no-dissect",
        "--images",
        sample_image,
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    model = load_run(out)["json"]["models"][0]
    assert model["weights"] == "pretrained"
    assert str(models_dir / "yolo11n.pt") in model["weights_source"]
    assert model["parameters"] == 2_616_248
    md = load_run(out)["md_path"].read_text()
    assert "Warning: random weights" not in md


def test_depth_anything_save_pretrained_folder_loads(ub, tmp_path, sample_image):
    cls = ub.DepthAnythingV2SmallBenchmark
    saved = cls.build_random_network()
    folder = tmp_path / "Depth-Anything-V2-Small-hf"  # named like the hub repo, as README says
    saved.save_pretrained(folder)
    cls.random_processor().save_pretrained(folder)

    bench = cls(CPU, weights="pretrained", models_dir=tmp_path)
    source = bench.load()
    assert str(folder) in source
    loaded = dict(bench.network().state_dict())
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded[name], tensor), name
    image = load_rgb(sample_image)
    prediction, phases = bench.run_pipeline(image)
    assert tuple(prediction["predicted_depth"].shape) == (image.height, image.width)


def test_mobile_sam_state_dict_file_loads(ub, tmp_path):
    from ultralytics.models.sam.build import build_mobile_sam

    saved = build_mobile_sam(None)
    torch.save(saved.state_dict(), tmp_path / "mobile_sam.pt")  # the released file is a plain state dict
    bench = ub.MobileSAMBenchmark(CPU, weights="pretrained", models_dir=tmp_path, options={"sam_prompt": "box"})
    assert str(tmp_path / "mobile_sam.pt") in bench.load()
    loaded = bench.network().state_dict()
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded[name], tensor), name


def test_missing_hf_model_offline_names_both_ways_out(ub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bench = ub.DepthAnythingV2SmallBenchmark(CPU, weights="pretrained", models_dir=tmp_path)
    with pytest.raises(WeightsError) as failure:
        bench.load()
    message = str(failure.value)
    assert "depth-anything/Depth-Anything-V2-Small-hf" in message
    assert str(tmp_path / "Depth-Anything-V2-Small-hf") in message
    assert "--weights random" in message


def test_unreachable_hub_fails_fast_without_offline_flag(ub, tmp_path, monkeypatch):
    """Without HF_HUB_OFFLINE the tool asks the hub once, with a timeout, instead of letting the
    libraries retry for minutes: the probe's arguments are the check (the mock fails at once)."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked = []

    def unreachable(repo, timeout=None):
        asked.append((repo, timeout))
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    bench = ub.DepthAnythingV2BaseBenchmark(CPU, weights="pretrained", models_dir=tmp_path)
    with pytest.raises(WeightsError) as failure:
        bench.load()
    message = str(failure.value)
    assert asked == [("depth-anything/Depth-Anything-V2-Base-hf", 15)]
    assert "cannot be reached" in message and "--weights random" in message
