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
from vision_bench.models.base import ModelBenchmark


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


def kill_self(sig, message: str) -> None:
    print(message, flush=True)
    os.kill(os.getpid(), sig)
    time.sleep(5)


class SelfKillBenchmark(TinyConvBenchmark):
    """Kills its own process on its second inference run (os.kill: nothing Python can catch)."""

    MODEL_NAME, CLI_NAME = "SelfKill", "selfkill"
    SIGNAL = signal.SIGKILL

    def forward(self, inputs):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2:
            kill_self(self.SIGNAL, "about to die")
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


class KnownMemoryBenchmark(TinyConvBenchmark):
    """Sweeps: a batch of n takes exactly n x ITEM_BYTES more (one touched tensor, held until the
    postprocess), and a batch past OOM_PAST raises an out-of-memory error, as a device that full would."""

    MODEL_NAME, CLI_NAME = "KnownMemory", "knownmemory"
    SWEEP_UNSUPPORTED: dict = {}
    SIZE_STEP = 8
    ITEM_BYTES = 48 * 2**20
    OOM_PAST: int | None = 12

    def preprocess_batch(self, images, size):
        return torch.zeros(len(images), 3, size or 16, size or 16)

    def forward(self, inputs):
        n = inputs.shape[0]
        if self.OOM_PAST is not None and n > self.OOM_PAST:
            raise MemoryError(f"out of memory (a simulated device: batch {n} > {self.OOM_PAST})")
        held = torch.ones(n * self.ITEM_BYTES // 4)  # float32, every page written
        return self.model(inputs), held

    def postprocess(self, outputs, image):
        return outputs[0]

    def postprocess_batch(self, outputs, images):
        return list(outputs[0])


class RealLimitMemoryBenchmark(KnownMemoryBenchmark):
    """The same growth, no simulated edge: --memory-limit makes the allocation itself fail."""

    MODEL_NAME, CLI_NAME = "RealLimitMemory", "reallimitmemory"
    OOM_PAST = None


class KilledAtBatchBenchmark(KnownMemoryBenchmark):
    """Its worker is killed (SIGKILL, as the kernel's OOM killer does) at any batch of KILL_FROM or more."""

    MODEL_NAME, CLI_NAME = "KilledAtBatch", "killedatbatch"
    ITEM_BYTES = 2**20
    OOM_PAST = None
    KILL_FROM = 8

    def forward(self, inputs):
        if inputs.shape[0] >= self.KILL_FROM:
            kill_self(signal.SIGKILL, "killing myself like the OOM killer")
        return super().forward(inputs)


class NoBatchBenchmark(KnownMemoryBenchmark):
    """Resizes but cannot batch: swept on input size only."""

    MODEL_NAME, CLI_NAME = "NoBatch", "nobatch"
    ITEM_BYTES = 2**20
    SWEEP_UNSUPPORTED = {"batch": "this test model takes one image at a time"}


class OffsetLinear(nn.Module):
    """(x + 1000) W - 1000 W: exact in fp32, ruined by rounding x + 1000 to bfloat16 (steps of 4 or 8)."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n) / n**0.5)

    def forward(self, x):
        offset = torch.full_like(x, 1000.0)
        return nn.functional.linear(x + offset, self.weight) - nn.functional.linear(offset, self.weight)


class HalfFragileBenchmark(TinyConvBenchmark):
    """--divergence: one layer (`3`, an OffsetLinear) that bfloat16 ruins among layers it barely touches;
    torch-bf16 fails parity and keeping that one layer in fp32 makes it pass."""

    MODEL_NAME, CLI_NAME = "HalfFragile", "halffragile"

    def load_random(self):
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(768, 64), nn.GELU(), OffsetLinear(64), nn.ReLU(), nn.Linear(64, 16)
        ).eval()
        return "random (test)"

    def preprocess(self, image):
        return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


TEST_MODELS = [
    TinyConvBenchmark,
    HalfFragileBenchmark,
    SelfKillBenchmark,
    SegfaultBenchmark,
    SleepyBenchmark,
    KnownMemoryBenchmark,
    RealLimitMemoryBenchmark,
    KilledAtBatchBenchmark,
    NoBatchBenchmark,
]


def register():
    for cls in TEST_MODELS:
        ub.MODELS_BY_CLI_NAME[cls.CLI_NAME] = cls


if __name__ == "__main__":  # the tool's command line with the test models added
    import worker_models  # by name, so that a worker finds the classes under the same name

    worker_models.register()
    sys.exit(ub.main(sys.argv[1:]))
