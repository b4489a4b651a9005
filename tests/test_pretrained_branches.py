"""The branches of the pretrained loaders that a machine without weights never reaches: a
broken local folder, a Hugging Face cache hit, DepthPro's use_fov_model keyword, and a YOLO
.pt file whose weights (not only its path) are the ones that run. Tiny configurations of the
real classes keep every case fast."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import SCRIPT
from PIL import Image

from vision_bench.common import WeightsError
from vision_bench.models.library_bases import HFDepthBenchmark

CPU = torch.device("cpu")


def tiny_depth_anything(ub):
    """The Small model's class with a tiny backbone: same loader, same processor, a 0.1 MB file."""

    class TinyDepthAnything(ub.DepthAnythingV2SmallBenchmark):
        HIDDEN_SIZE, LAYERS, HEADS, OUT_INDICES = 32, 4, 2, [1, 2, 3, 4]
        FUSION_SIZE, NECK_SIZES = 16, [8, 16, 32, 32]

    return TinyDepthAnything


@pytest.fixture
def no_hub(ub, monkeypatch):
    """The hub must not be asked: both the tool's probe and the library call fail the test."""
    import huggingface_hub

    def probe(*args, **kwargs):
        raise AssertionError("the hub was probed")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # so that only the tool's own logic keeps it offline
    monkeypatch.setattr(HFDepthBenchmark, "_check_hub_reachable", probe)
    monkeypatch.setattr(huggingface_hub, "model_info", probe)


def test_folder_without_weights_names_the_folder_and_never_probes(ub, tmp_path, no_hub):
    cls = ub.DepthAnythingV2SmallBenchmark
    folder = tmp_path / "Depth-Anything-V2-Small-hf"
    tiny_depth_anything(ub).random_config().save_pretrained(folder)  # config.json, no weights file
    cls.random_processor().save_pretrained(folder)
    assert not list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    with pytest.raises(WeightsError) as failure:
        cls(CPU, weights="pretrained", models_dir=tmp_path).load()
    message = str(failure.value)
    assert f"could not load the model folder {folder}" in message
    assert "save_pretrained()" in message and "--weights random" in message


CACHE_PROBE = r"""
import importlib.util, json, sys
import torch
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[1]).parent))
spec = importlib.util.spec_from_file_location("unified_benchmark", sys.argv[1])
ub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ub)
import huggingface_hub

def probe(*args, **kwargs):
    raise AssertionError("the hub was probed")

ub.HFDepthBenchmark._check_hub_reachable = probe
huggingface_hub.model_info = probe
bench = ub.DepthAnythingV2SmallBenchmark(torch.device("cpu"), weights="pretrained", models_dir=sys.argv[2])
source = bench.load()
expected = torch.load(sys.argv[3])
loaded = bench.network().state_dict()
print(json.dumps({"source": source, "same_weights": sorted(expected) == sorted(loaded) and
                  all(torch.equal(loaded[k], v) for k, v in expected.items())}))
"""


def test_hugging_face_cache_hit_is_named_and_never_probes(ub, tmp_path):
    """A cache laid out as huggingface_hub lays it out (refs/main -> snapshots/<revision>/),
    in a fresh process whose HF_HUB_CACHE points at it, with no local folder and no offline flag."""
    import os

    cache = tmp_path / "hub"
    repo_dir = cache / ("models--" + ub.DepthAnythingV2SmallBenchmark.HF_REPO.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / revision
    torch.manual_seed(5)
    saved = tiny_depth_anything(ub).build_random_network()
    saved.save_pretrained(snapshot)
    ub.DepthAnythingV2SmallBenchmark.random_processor().save_pretrained(snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    torch.save(saved.state_dict(), tmp_path / "expected.pt")
    empty_models = tmp_path / "models"
    empty_models.mkdir()

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HOME", "TRANSFORMERS_CACHE")}
    env.update(HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf_home"))
    proc = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE, str(SCRIPT), str(empty_models), str(tmp_path / "expected.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Hugging Face cache" in found["source"] and ub.DepthAnythingV2SmallBenchmark.HF_REPO in found["source"]
    assert found["same_weights"], "the cached weights are not the ones loaded"


def tiny_depthpro_config(use_fov_model: bool):
    from transformers import DepthProConfig, Dinov2Config

    enc = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, patch_size=16, image_size=64)
    return DepthProConfig(
        patch_size=64,
        patch_model_config=Dinov2Config(**enc),
        image_model_config=Dinov2Config(**enc),
        fov_model_config=Dinov2Config(**enc),
        fusion_hidden_size=16,
        intermediate_hook_ids=[3, 1],
        intermediate_feature_dims=[16, 16],
        scaled_images_ratios=[0.25, 0.5, 1],
        scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
        scaled_images_feature_dims=[32, 32, 16],
        use_fov_model=use_fov_model,
    )


def test_depthpro_folder_loads_with_the_field_of_view_model(ub, tmp_path, no_hub):
    """Saved without the field-of-view head: only the loader's use_fov_model=True adds it."""
    from transformers import DepthProForDepthEstimation, DepthProImageProcessor

    torch.manual_seed(3)
    saved = DepthProForDepthEstimation(tiny_depthpro_config(use_fov_model=False)).eval()
    assert saved.fov_model is None
    folder = tmp_path / "DepthPro-hf"
    saved.save_pretrained(folder)
    DepthProImageProcessor(
        size={"height": 256, "width": 256},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    ).save_pretrained(folder)

    bench = ub.DepthProBenchmark(CPU, weights="pretrained", models_dir=tmp_path)
    source = bench.load()
    assert str(folder) in source and "local folder" in source
    network = bench.network()
    assert network.config.use_fov_model is True and network.fov_model is not None
    loaded = network.state_dict()
    for name, tensor in saved.state_dict().items():  # everything that was saved is what runs
        assert torch.equal(loaded[name], tensor), name
    prediction, _ = bench.run_pipeline(Image.new("RGB", (80, 60), (100, 150, 200)))
    assert prediction.get("field_of_view") is not None
    assert "field_of_view_deg" in bench.summarize_prediction(prediction)


def test_yolo_pt_weights_are_the_ones_that_run(ub, tmp_path):
    """Weights far from the yaml's initialisation, saved as ultralytics saves (fp16): the loaded
    model holds them, and its output is theirs, not a freshly built yaml model's."""
    from ultralytics import YOLO

    torch.manual_seed(11)
    source_model = YOLO("yolo11n.yaml", verbose=False)
    with torch.no_grad():
        for p in source_model.model.parameters():
            p.copy_((torch.randn_like(p) * 0.05 + 0.01).half().float())  # exactly representable in fp16
    expected = {k: v.clone() for k, v in source_model.model.state_dict().items()}
    source_model.save(tmp_path / "yolo11n.pt")

    bench = ub.YOLO11nDetectBenchmark(CPU, weights="pretrained", models_dir=tmp_path)
    bench.load()
    loaded = bench.ul_model.model.float().state_dict()
    assert sorted(loaded) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(loaded[name].float(), tensor.float()), name

    x = torch.rand(1, 3, 64, 64)
    reference = source_model.model.eval()
    with torch.inference_mode():
        ours = bench.ul_model.model.eval()(x)[0]
        theirs = reference(x)[0]
    torch.testing.assert_close(ours, theirs)
