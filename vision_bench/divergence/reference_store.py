"""The reference pass's leaf outputs (--divergence), kept for the variant pass: in memory up to a
budget, the rest spilled to a scratch folder by a writer thread behind a queue bounded in bytes."""

from __future__ import annotations

import math
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .error_figures import memory_order

SPILL_QUEUE_BYTES = 64 << 20  # reference outputs waiting to be written; the hook waits beyond this
SPILL_BATCH_BYTES = 8 << 20  # handed to the writer together
RESIDENT_BYTES = 32 << 20  # the first reference outputs, kept in memory up to this (never written)


class ReferenceStore:
    """The reference pass's leaf outputs as float32 host copies: the first RESIDENT_BYTES of them kept in
    memory, the rest as raw files in a scratch folder, written by a thread behind a queue bounded in bytes
    (the hook waits beyond max_bytes) and handed over in batches of SPILL_BATCH_BYTES (one wake-up of the
    writer per batch: a hand-over per output cost more than its copy); read back one at a time."""

    def __init__(self, parent: Path | None = None, max_bytes: int = SPILL_QUEUE_BYTES, resident: int = RESIDENT_BYTES):
        self.folder = Path(tempfile.mkdtemp(prefix="divergence-", dir=parent))
        self.max_bytes, self.resident_budget = max_bytes, resident
        # each output with its shape and the order of its dimensions in memory (kept as the tensor was
        # laid out: one copy, where a channels-last tensor made contiguous cost a second)
        self.index: dict[tuple, tuple[Path, list[int], list[int]]] = {}
        self.resident: dict[tuple, tuple[np.ndarray, list[int], list[int]]] = {}
        self.resident_bytes = 0
        self.reference_sums: dict[tuple, tuple[float, float]] = {}  # figures_and_reference_sums's, by key
        self.bytes_written = 0
        self.wait_s = 0.0  # the hook waiting for the queue to drain
        self.copy_s = 0.0  # the hook copying outputs to the host
        self.write_s = 0.0  # CPU time of the writer thread writing them, beside the pass
        self.errors: list[str] = []
        self._pending = 0
        self._batch: list[tuple[np.ndarray, Path]] = []
        self._batch_bytes = 0
        self._read_buffer: np.ndarray | None = None
        self._cond = threading.Condition()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def put(self, key: tuple, tensor) -> None:
        import torch

        nbytes = tensor.numel() * 4
        start = time.perf_counter()
        kept = self.resident_bytes + nbytes <= self.resident_budget
        if not kept:
            if self._batch and self._pending + nbytes > self.max_bytes:
                self._hand_over()
            with self._cond:
                self._cond.wait_for(lambda: self._pending == 0 or self._pending + nbytes <= self.max_bytes)
                self._pending += nbytes
        copied = time.perf_counter()
        self.wait_s += copied - start
        order = memory_order(tensor) or list(range(tensor.dim()))
        laid_out = tensor.detach().permute(order)
        host = torch.empty(laid_out.shape, dtype=torch.float32).copy_(laid_out).numpy().reshape(-1)
        if kept:
            self.resident[key] = (host, list(tensor.shape), order)
            self.resident_bytes += nbytes
        else:
            path = self.folder / f"{len(self.index):06d}.f32"
            self.index[key] = (path, list(tensor.shape), order)
            self._batch.append((host, path))
            self._batch_bytes += nbytes
            if self._batch_bytes >= SPILL_BATCH_BYTES:
                self._hand_over()
        self.copy_s += time.perf_counter() - copied

    def _hand_over(self) -> None:
        self._queue.put(self._batch)
        self._batch, self._batch_bytes = [], 0

    def _write(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            for host, path in batch:
                self._write_one(host, path)
            batch = host = None

    def _write_one(self, host, path: Path) -> None:
        nbytes = host.nbytes
        start = time.thread_time()  # CPU time: the wall time counts the pass's compute it waits beside
        try:
            host.tofile(path)
            self.bytes_written += nbytes
        except OSError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.write_s += time.thread_time() - start
            with self._cond:
                self._pending -= nbytes
                self._cond.notify_all()

    def flush(self) -> None:
        start = time.perf_counter()
        if self._batch:
            self._hand_over()
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0)
        self.wait_s += time.perf_counter() - start
        if self.errors:
            raise OSError(f"the reference outputs could not be spilled to {self.folder}: {self.errors[0]}")

    def get(self, key: tuple):
        """The reference output of `key` as a flat float32 array in its logical order, and its shape."""
        tensor = self.tensor(key)
        if tensor is None:
            return None, None
        flat = tensor.numpy().reshape(-1)  # a view when it was stored in logical order, else a copy
        return flat, list(tensor.shape)

    def tensor(self, key: tuple):
        """The reference output of `key` as a float32 CPU tensor of its shape, laid out in memory as it was
        (a channels-last output stays channels-last), or None; a spilled one is read into one buffer reused
        from record to record (the size of the largest so far): valid until the next read."""
        import torch

        flat, shape, order = self._stored(key)
        if flat is None:
            return None
        laid_out = torch.from_numpy(flat).view([shape[d] for d in order])
        return laid_out.permute([order.index(d) for d in range(len(order))])

    def _stored(self, key: tuple):
        if key in self.resident:
            return self.resident[key]
        entry = self.index.get(key)
        if entry is None:
            return None, None, None
        path, shape, order = entry
        n = math.prod(shape)
        if self._read_buffer is None or self._read_buffer.size < n:
            self._read_buffer = np.empty(n, dtype=np.float32)
        out = self._read_buffer[:n]
        with open(path, "rb") as f:
            if f.readinto(memoryview(out).cast("B")) != out.nbytes:  # type: ignore[arg-type]  # numpy arrays are buffers
                raise OSError(f"{path}: the spilled reference output is shorter than its shape {shape}")
        return out, shape, order

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
