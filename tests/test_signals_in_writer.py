"""Ctrl-C while the reports are being written: the real handler, the real signal-holding code
and the real writer, with the signal sent from inside the writer's atomic file write."""

import csv
import os
import signal
import time

import pytest
import torch
from conftest import load_run
from torch import nn

import vision_bench.common
import vision_bench.reports.write
import vision_bench.run.orchestrator
from vision_bench.common import EXIT_SIGINT, atomic_write_text
from vision_bench.models.base import ModelBenchmark


def tiny_benchmark_class(ub, model_name, cli_name):
    class Tiny(ModelBenchmark):
        MODEL_NAME, CLI_NAME, TASK, INPUT_SIZE = model_name, cli_name, "test", 8

        def load_pretrained(self):
            raise AssertionError("random weights only")

        def load_random(self):
            self.model = nn.Conv2d(3, 4, 3).eval()
            return "random (test)"

        def network(self):
            return self.model

        def preprocess(self, image):
            return torch.zeros(1, 3, 8, 8)

        def forward(self, inputs):
            return self.model(inputs)

        def postprocess(self, outputs, image):
            return outputs

    return Tiny


@pytest.fixture
def two_tiny_models(ub, monkeypatch):
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "tiny-a", tiny_benchmark_class(ub, "TinyA", "tiny-a"))
    monkeypatch.setitem(ub.MODELS_BY_CLI_NAME, "tiny-b", tiny_benchmark_class(ub, "TinyB", "tiny-b"))


def sigint_during_writes(ub, monkeypatch, at_calls: set[int]) -> list:
    """Patch the atomic write that write_reports uses: on the given report writes (1-based,
    counting only the four report files) it sends SIGINT to this process, then writes.
    Returns the names of the report files written, in order."""
    real = atomic_write_text
    written = []

    def write_with_signal(path, text):
        is_report = path.name.startswith("benchmark_")  # not the layer folder's metadata
        if is_report and len(written) + 1 in at_calls:
            os.kill(os.getpid(), signal.SIGINT)
            # Python runs the handler in this thread at a later bytecode boundary, usually the next;
            # wait until the writer's holding code has it, so that no load can move it past the write.
            deadline = time.monotonic() + 60
            while not vision_bench.run.orchestrator._deferred_signals and time.monotonic() < deadline:
                time.sleep(0.001)
            assert vision_bench.run.orchestrator._deferred_signals, "the signal was not held during the write"
        real(path, text)
        if is_report:
            written.append(path.name)

    # The reports write through both: the JSON via common.atomic_write_json, the others directly.
    for module in (vision_bench.common, vision_bench.reports.write):
        monkeypatch.setattr(module, "atomic_write_text", write_with_signal)
    return written


def read_reports(out) -> dict:
    run = load_run(out)
    with open(run["csv_path"], newline="") as f:
        run["csv_rows"] = list(csv.DictReader(f))
    run["md"] = run["md_path"].read_text()
    return run


def test_sigint_during_the_first_report_write_is_held_then_honoured(
    ub, tmp_path, sample_image, monkeypatch, two_tiny_models
):
    # Call 1 is the JSON after the first model; calls 5-8 are the final write after the interrupt.
    # The second signal lands in the final write, which must finish all the same.
    written = sigint_during_writes(ub, monkeypatch, at_calls={1, 5})
    # What was there before: Python's default handler, or SIG_IGN when the suite runs as a background job
    # of a non-interactive shell (such jobs start with SIGINT ignored)
    before = signal.getsignal(signal.SIGINT)
    code = ub.main(
        [
            "--isolation",
            "none",
            "--models",
            "tiny-a,tiny-b",
            "--weights",
            "random",
            "--runs",
            "2",
            "--no-dissect",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == EXIT_SIGINT == 130
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    # Both rounds wrote all four files: the signal cut neither.
    kinds = [(name.split("_")[1], name.rsplit(".", 1)[1]) for name in written]
    assert kinds == [("results", "json"), ("summary", "csv"), ("report", "md"), ("report", "html")] * 2, written

    run = read_reports(tmp_path)
    data = run["json"]
    assert data["status"] == "interrupted"
    assert [(m["model"], m["status"]) for m in data["models"]] == [("TinyA", "complete"), ("TinyB", "not run")]
    ran = [m["model"] for m in data["models"] if m["status"] != "not run"]
    assert [row["model"] for row in run["csv_rows"]] == ran == ["TinyA"]
    assert run["csv_rows"][0]["status"] == "complete"
    md = run["md"]
    assert "**Run interrupted.**" in md and "TinyB (not run)" in md
    summary_rows = [
        line.split("|")[1].strip()
        for line in md.split("## Summary")[1].split("\n## ")[0].splitlines()
        if line.startswith("| ") and not line.startswith("| model |")
    ]
    assert summary_rows == ran


def test_second_sigint_during_the_final_write_does_not_cut_it(ub, tmp_path, sample_image, monkeypatch, two_tiny_models):
    """First Ctrl-C in the CSV write after the first model, a second one in the final Markdown write."""
    written = sigint_during_writes(ub, monkeypatch, at_calls={2, 7})
    code = ub.main(
        [
            "--isolation",
            "none",
            "--models",
            "tiny-a,tiny-b",
            "--weights",
            "random",
            "--runs",
            "2",
            "--no-dissect",
            "--images",
            str(sample_image),
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 130
    assert len(written) == 8, written
    run = read_reports(tmp_path)
    assert run["json"]["status"] == "interrupted"
    assert [m["status"] for m in run["json"]["models"]] == ["complete", "not run"]
    assert [row["model"] for row in run["csv_rows"]] == ["TinyA"]
    assert "**Run interrupted.**" in run["md"]
    assert not list(run["results_dir"].glob(".*.tmp")), "a temporary file was left behind"
