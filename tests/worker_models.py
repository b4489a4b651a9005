"""Tiny model classes for the worker-process tests. They live at module level so that a worker
process can import them by name (a class defined inside a test function cannot be sent to one)."""
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tool, when this file runs as a script

import torch
from torch import nn

import unified_benchmark as ub
from vision_bench.common import WeightsError
from vision_bench.model_benchmark import ModelBenchmark


class TinyConvBenchmark(ModelBenchmark):
    """A real (tiny) network: completes every phase in well under a second."""
    MODEL_NAME, CLI_NAME, TASK, INPUT_SIZE = "TinyConv", "tinyconv", "test", 16

    def load_pretrained(self):
        raise WeightsError("random weights only")

    def load_random(self):
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        return "random (test)"

    def network(self):
        return self.model

    def preprocess(self, image):
        return torch.zeros(1, 3, 16, 16)

    def forward(self, inputs):
        return self.model(inputs)

    def postprocess(self, outputs, image):
        return outputs


class SelfKillBenchmark(TinyConvBenchmark):
    """Kills its own process on its second inference run (os.kill: nothing Python can catch)."""
    MODEL_NAME, CLI_NAME = "SelfKill", "selfkill"
    SIGNAL = signal.SIGKILL

    def forward(self, inputs):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2:
            print("about to die", flush=True)
            os.kill(os.getpid(), self.SIGNAL)
            time.sleep(5)
        return super().forward(inputs)


class SegfaultBenchmark(SelfKillBenchmark):
    MODEL_NAME, CLI_NAME = "Segfault", "segfault"
    SIGNAL = signal.SIGSEGV


class SleepyBenchmark(TinyConvBenchmark):
    """Hangs in its first inference run (a stuck model: only a timeout or a signal ends it)."""
    MODEL_NAME, CLI_NAME = "Sleepy", "sleepy"

    def forward(self, inputs):
        print("SLEEPING", flush=True)
        time.sleep(600)
        return super().forward(inputs)


TEST_MODELS = [TinyConvBenchmark, SelfKillBenchmark, SegfaultBenchmark, SleepyBenchmark]


def register():
    for cls in TEST_MODELS:
        ub.MODELS_BY_CLI_NAME[cls.CLI_NAME] = cls


if __name__ == "__main__":  # the tool's command line with the test models added
    import worker_models  # by name, so that a worker finds the classes under the same name
    worker_models.register()
    sys.exit(ub.main(sys.argv[1:]))
