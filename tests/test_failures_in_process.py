"""Failures that cannot be produced for real on a CPU machine (CUDA out of memory) and output
rendering with the network blocked, driven through the tool's own code."""

import socket

import numpy as np
import pytest
import torch
from conftest import load_run
from torch import nn

from vision_bench.models.base import ModelBenchmark


def test_out_of_memory_is_reported_with_memory_figures_and_others_kept(ub, tmp_path, sample_image, monkeypatch):
    class OOMBenchmark(ModelBenchmark):
        MODEL_NAME, CLI_NAME, TASK, INPUT_SIZE = "OOMNet", "oomnet", "test", 8

        def load_pretrained(self):
            raise AssertionError("random weights only")

        def load_random(self):
            self.model = nn.Conv2d(3, 4, 3)
            self.calls = 0
            return "random (test)"

        def network(self):
            return self.model

        def preprocess(self, image):
            return torch.zeros(1, 3, 8, 8)

        def forward(self, inputs):
            self.calls += 1
            if self.calls == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return self.model(inputs)

        def postprocess(self, outputs, image):
            return outputs

    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "oomnet", OOMBenchmark)
    code = ub.main(
        [
            "--models",
            "oomnet,yolo11n-detect",
            "--weights",
            "random",
            "--runs",
            "3",
            "--keep-going",
            "--isolation",
            "none",
            "--no-dissect",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 1
    run = load_run(tmp_path)
    oom, yolo = run["json"]["models"]
    assert run["json"]["status"] == "incomplete"
    assert oom["status"] == "failed" and oom["error"]["type"] == "OutOfMemoryError"
    assert oom["error"]["phase"] == "warmup" and "20.00 GiB" in oom["error"]["message"]
    assert len(oom["runs"]) == 1  # the run measured before the failure is kept
    assert oom["memory"]["at_failure"]["cpu_peak_rss_bytes"] > 0
    assert yolo["status"] == "complete"
    md = run["md_path"].read_text()
    failed = md.split("## Failed or interrupted models")[1].split("\n## ")[0]
    assert "OOMNet" in failed and "OutOfMemoryError" in failed and "peak at failure" in failed
    assert "| YOLO11nDetect | random |" in md


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("rendering tried the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    import ultralytics.utils.plotting as plotting

    monkeypatch.setattr(plotting, "check_font", refuse)


def test_ultralytics_outputs_render_without_network(ub, tmp_path, no_network):
    from PIL import Image
    from ultralytics.engine.results import Results

    image = Image.new("RGB", (160, 120), (90, 120, 150))
    bgr = np.asarray(image)[..., ::-1].copy()
    boxes = torch.tensor([[10.0, 10.0, 80.0, 100.0, 0.9, 0.0]])
    masks = torch.zeros(1, 120, 160)
    masks[0, 20:60, 30:90] = 1
    keypoints = torch.rand(1, 17, 3) * torch.tensor([160.0, 120.0, 1.0])
    cases = {
        "detect": Results(bgr, "x.jpg", {0: "person"}, boxes=boxes),
        "segment": Results(bgr, "x.jpg", {0: "person"}, boxes=boxes, masks=masks),
        "pose": Results(bgr, "x.jpg", {0: "person"}, boxes=boxes, keypoints=keypoints),
    }
    bench = ub.YOLO11nDetectBenchmark(torch.device("cpu"), weights="random")
    for name, result in cases.items():
        path = tmp_path / f"{name}.png"
        bench.render_prediction(image, result, path)
        with Image.open(path) as im:
            assert im.size == (160, 120)
            assert np.asarray(im).std() > 5, "the drawing should be visible"
        assert bench.summarize_prediction(result)["detections"] == 1
