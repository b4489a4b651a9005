"""The after-cleanup memory figure is read when nothing of the model is alive any more: not the
network, not the inputs, not the last prediction, not the frames of an exception (issue: cleanup
frees what it says). Checked with weak references to every tensor the model created, in-process
(--isolation none, where a leak would carry over to the next model)."""

import weakref

import torch
from conftest import load_run
from torch import nn

import vision_bench.run.model_pass
from vision_bench.measure.memory import free_cached_memory
from vision_bench.models.base import ModelBenchmark

CREATED: list = []  # weak references to every tensor and module the test model made


def track(obj):
    CREATED.append(weakref.ref(obj))
    return obj


def make_model(ub, fail_in=None):
    class Tracked(ModelBenchmark):
        MODEL_NAME = f"Tracked{fail_in or ''}"
        CLI_NAME = f"tracked-{fail_in or 'ok'}"
        TASK, INPUT_SIZE = "test", 16

        def load_pretrained(self):
            raise AssertionError("random weights only")

        def load_random(self):
            self.model = track(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))
            track(self.model[0].weight)
            return "random (test)"

        def network(self):
            return self.model

        def preprocess(self, image):
            return track(torch.ones(1, 3, 16, 16))

        def forward(self, inputs):
            return track(self.model(inputs))

        def postprocess(self, outputs, image):
            return track(outputs * 2)

        def render_prediction(self, image, prediction, path):
            if fail_in == "output":
                raise RuntimeError("rendering failed with the prediction in hand")

    return Tracked


def test_nothing_of_a_model_is_alive_when_the_after_cleanup_figure_is_read(ub, tmp_path, sample_image, monkeypatch):
    ok, failing = make_model(ub), make_model(ub, fail_in="output")
    for cls in (ok, failing):
        monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, cls.CLI_NAME, cls)
    alive_at_cleanup = {}
    original = free_cached_memory

    def checked_free(device):
        error = original(device)
        alive_at_cleanup[len(alive_at_cleanup)] = [r() for r in CREATED if r() is not None]
        return error

    monkeypatch.setattr(vision_bench.run.model_pass, "free_cached_memory", checked_free)  # where the pass looks it up
    CREATED.clear()
    code = ub.main(
        [
            "--models",
            f"{failing.CLI_NAME},{ok.CLI_NAME}",
            "--weights",
            "random",
            "--runs",
            "2",
            "--keep-going",
            "--no-dissect",
            "--isolation",
            "none",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 1
    failed, complete = load_run(tmp_path)["json"]["models"]
    assert failed["status"] == "failed" and failed["error"]["phase"] == "output"
    assert complete["status"] == "complete"
    assert len(CREATED) > 10, "the test model should have made tensors to track"
    assert len(alive_at_cleanup) == 2
    for model, alive in zip(("failed", "complete"), alive_at_cleanup.values()):
        assert alive == [], (
            f"{model} model: {len(alive)} objects still referenced at cleanup: {[type(a).__name__ for a in alive][:5]}"
        )
