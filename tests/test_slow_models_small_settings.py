"""The two workloads too slow for a 2-core CPU at full size (DepthPro: minutes per forward;
MobileSAM segment-everything: minutes per image) run through the tool's own code paths with
smaller settings: a tiny configuration of the same DepthPro class, a coarse point grid."""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_run


@pytest.fixture
def tiny_depthpro(ub):
    from transformers import DepthProConfig, DepthProImageProcessor, Dinov2Config

    class TinyDepthPro(ub.DepthProBenchmark):
        @classmethod
        def random_config(cls):
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
                use_fov_model=True,
            )

        @classmethod
        def random_processor(cls):
            return DepthProImageProcessor(
                size={"height": 256, "width": 256},
                do_rescale=True,
                rescale_factor=1 / 255,
                do_normalize=True,
                image_mean=[0.5] * 3,
                image_std=[0.5] * 3,
            )

    return TinyDepthPro


def test_depthpro_code_path_with_a_tiny_configuration(ub, tiny_depthpro, tmp_path, sample_image, monkeypatch):
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "depthpro", tiny_depthpro)
    code = ub.main(
        [
            "--models",
            "depthpro",
            "--weights",
            "random",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
            "--isolation",
            "none",
        ]
    )
    assert code == 0
    run = load_run(tmp_path)
    model = run["json"]["models"][0]
    assert model["input_shape"] == [1, 3, 256, 256]  # what the processor really fed the network
    assert "field_of_view_deg" in model["prediction_summary"]
    blocks = [b["block"].split(" ")[0] for b in model["time_breakdown"]["blocks"]]
    assert blocks[:6] == list(ub.DepthProBenchmark.TIME_BLOCKS)
    # patch encoder tokens (35 patches of 4x4 tokens + class token) are reshaped to grids
    folder = Path(model["dissection"]["folder"])
    records = json.loads((folder / "layers_metadata.json").read_text())["records"].values()
    reshaped = [r for r in records if r.get("reshaped")]
    assert reshaped and all(r["reshaped"] == "tokens reshaped to 4x4 grid after 1 leading token(s)" for r in reshaped)
    patch_encoder = [r for r in reshaped if r["name"].startswith("depth_pro.encoder.patch_encoder.")]
    assert patch_encoder and all(r["shape"][:2] == [35, 17] for r in patch_encoder)
    planes = np.load(folder / patch_encoder[0]["files"][1])
    assert planes.shape == (8, 4, 4)
    md = run["md_path"].read_text()
    assert "field_of_view_deg" in md and "DepthPro_output.png" in md


def test_mobilesam_segment_everything_with_a_coarse_grid(ub, tmp_path, sample_image, monkeypatch):
    from ultralytics.models.sam.predict import Predictor

    # 4x4 point prompts instead of 32x32: same code path, a sixty-fourth of the decoder work.
    monkeypatch.setattr(Predictor, "generate", functools.partialmethod(Predictor.generate, points_stride=4))
    code = ub.main(
        [
            "--models",
            "mobilesam",
            "--weights",
            "random",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
            "--no-dissect",
            "--isolation",
            "none",
        ]
    )
    assert code == 0
    model = load_run(tmp_path)["json"]["models"][0]
    assert model["config"] == {"sam_prompt": "everything"}  # the class default when --sam-prompt is not given
    assert model["status"] == "complete" and [r["kind"] for r in model["runs"]] == ["cold", "timed"]
    assert "sam_prompt=everything" in load_run(tmp_path)["md_path"].read_text()
