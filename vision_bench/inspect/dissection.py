"""Layer dissection: every call of every leaf module in one forward pass, its statistics, a PNG
of its feature maps and an NPY of its values, with host memory bounded by a writer queue."""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

from ..common import first_tensor, leaf_modules, log
from ..progress import pass_progress
from ..records.inspection import ActivationProfile, CallWithoutTensor, DissectionSummary, LayerExtreme, LayerRecord
from .feature_png import render_feature_grid
from .layer_stats import tensor_stats

DISSECT_PNG_CHANNELS = 16  # channels drawn in a layer's PNG grid
DISSECT_NPY_CHANNELS = 8  # channels saved raw in a layer's NPY
DISSECT_QUEUE_SIZE = 8  # activations waiting for the writers; bounds host memory
DISSECT_QUEUE_BYTES = 256 << 20  # and their bytes: one larger activation may still pass alone
DISSECT_WRITER_THREADS = 2
DISSECT_SPARE_THREADS = 0  # torch threads given up to the writers (measured: giving one up was slower)
MAX_LEADING_TOKENS = 8  # class + register tokens before a ViT's patch grid


def token_grid(num_tokens: int, input_hw: tuple[int, int] | None):
    """(leading tokens, h, w) when num_tokens is a patch grid of the input's aspect ratio
    after a few class/register tokens, else None."""
    if not input_hw:
        return None
    target = math.log(input_hw[0] / input_hw[1])
    for lead in range(0, MAX_LEADING_TOKENS + 1):
        m = num_tokens - lead
        if m < 16:
            return None
        best = None
        for h in range(2, int(math.isqrt(m)) + 1):
            if m % h:
                continue
            for hh, ww in ((h, m // h), (m // h, h)):
                err = abs(math.log(hh / ww) - target)
                if best is None or err < best[0]:
                    best = (err, hh, ww)
        if best is not None and best[0] < 0.1:
            return lead, best[1], best[2]
    return None


def feature_planes(t, input_hw):
    """(C, H, W) view of batch element 0 of a feature map or a patch-token sequence, the
    first DISSECT_PNG_CHANNELS channels only, and a note when tokens were reshaped; (None, None)
    for a tensor with a zero dimension (an empty batch has no element 0; nothing to draw)."""
    if t.numel() == 0:
        return None, None
    if t.dim() == 4:
        return t[0, :DISSECT_PNG_CHANNELS], None
    if t.dim() == 3:
        grid = token_grid(t.shape[1], input_hw)
        if grid:
            lead, h, w = grid
            planes = t[0, lead:, :DISSECT_PNG_CHANNELS].transpose(0, 1).reshape(-1, h, w)
            return planes, f"tokens reshaped to {h}x{w} grid after {lead} leading token(s)"
    return None, None


class LayerDissector:
    """Hooks every leaf module, runs one forward pass, and records every call.

    Hooks compute statistics where the activation lives and hand a small host copy (the
    first channels of batch element 0) to a bounded queue; writer threads render the PNG and
    save the NPY. Host memory stays bounded by the queue, and the pass waits only when the
    queue is full. Hooks are removed and writers stopped even when the pass fails.
    """

    def __init__(self, out_dir: Path, input_hw=None, write_files: bool = True):
        self.out_dir = out_dir
        self.input_hw = input_hw
        self.write_files = write_files
        self.records: list[LayerRecord] = []
        self.call_counts: dict[str, int] = {}
        self.queue: queue.Queue = queue.Queue(maxsize=DISSECT_QUEUE_SIZE)
        self.writer_errors: list[str] = []
        self.width = 3
        # Bytes of host copies queued or being written: the hook waits while a new copy would
        # pass DISSECT_QUEUE_BYTES, so a network with 150 MB planes cannot queue 8 of them.
        self._pending_bytes = 0
        self._pending = threading.Condition()

    # -- writer threads --------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            nbytes = item[0].nbytes
            try:
                planes, png_path, npy_path = item
                np.save(npy_path, planes[:DISSECT_NPY_CHANNELS])
                render_feature_grid(planes, png_path)
            except Exception as exc:  # keep serving the queue; report at the end
                self.writer_errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                # Drop the array before waiting for the next one: a reference held across
                # queue.get() would keep one more activation copy alive per writer thread.
                item = planes = None
                self._release(nbytes)
                self.queue.task_done()

    def _reserve(self, nbytes: int) -> None:
        with self._pending:
            self._pending.wait_for(
                lambda: self._pending_bytes == 0 or self._pending_bytes + nbytes <= DISSECT_QUEUE_BYTES
            )
            self._pending_bytes += nbytes

    def _release(self, nbytes: int) -> None:
        with self._pending:
            self._pending_bytes -= nbytes
            self._pending.notify_all()

    def _file_stem(self, index: int) -> str:
        return f"layer_{index:0{self.width}d}"

    # -- the hook --------------------------------------------------------------------------
    def _make_hook(self, name: str, module_type: str):
        def hook(module, args, output):
            import torch

            index = len(self.records)
            call = self.call_counts.get(name, 0) + 1
            self.call_counts[name] = call
            tensor, source = first_tensor(output)
            if tensor is None:
                note = "no tensor in the output; no statistics"
                self.records.append(CallWithoutTensor(index, name, call, module_type, note=note))
                return
            record = LayerRecord(
                index,
                name,
                call,
                module_type,
                source=None if source == "output" else source,
                shape=list(tensor.shape),
                dtype=str(tensor.dtype).replace("torch.", ""),
                **tensor_stats(tensor),
                files=[],
            )
            self.records.append(record)
            if self.write_files and (tensor.is_floating_point() or tensor.dtype == torch.bool):
                planes, note = feature_planes(tensor, self.input_hw)
                if planes is not None and planes.numel():
                    record.reshaped = note
                    self._reserve(planes.numel() * 4)
                    host = planes.detach().to("cpu", torch.float32, copy=True).numpy()
                    stem = self._file_stem(index)
                    record.files = [f"{stem}.png", f"{stem}.npy"]
                    self.queue.put((host, self.out_dir / f"{stem}.png", self.out_dir / f"{stem}.npy"))

        return hook

    def _final_line(self) -> None:
        last = self.records[-1] if self.records else None
        where = f" {last.name} (call {last.call})" if last else ""
        log(f"DISSECT {len(self.records)}", f"calls recorded ({self.num_leaves} leaf modules hooked), last{where}")

    # -- the pass --------------------------------------------------------------------------
    def run(self, network, forward_call, label: str = "dissection", blocks=()) -> DissectionSummary:
        """Hook `network`'s leaves, call `forward_call()` once, return the summary (and its digest).
        `label` and `blocks` name the pass and its top-level blocks in the progress lines."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        leaves = leaf_modules(network)
        self.num_leaves = len(leaves)
        self.width = max(3, len(str(max(self.num_leaves - 1, 1))))
        writers = [threading.Thread(target=self._writer, daemon=True) for _ in range(DISSECT_WRITER_THREADS)]
        for t in writers:
            t.start()
        handles = [m.register_forward_hook(self._make_hook(name, type(m).__name__)) for name, m in leaves]
        import torch

        started = time.perf_counter()
        completed = False
        threads = torch.get_num_threads()
        if self.write_files and threads > 1 and DISSECT_SPARE_THREADS:
            torch.set_num_threads(max(1, threads - DISSECT_SPARE_THREADS))  # cores left to the writers
        progress = pass_progress(
            network,
            label,
            tag="DISSECT",
            blocks=blocks,
            detail=lambda: f"{len(self.records)} records, {self.queue.qsize()} waiting for the writers",
        )
        try:
            with progress:
                forward_call()
                completed = True
        finally:
            torch.set_num_threads(threads)
            for h in handles:
                h.remove()
            with pass_progress(None, f"{label}, writing the last files", tag="DISSECT", detail=progress.detail):
                if completed:
                    self.queue.join()  # every file written before we count them
                else:
                    self._drop_pending()  # fail or interrupt fast: unwritten files are dropped
                for _ in writers:
                    self.queue.put(None)
                for t in writers:
                    t.join(timeout=30)
        self._renumber_if_needed()
        seconds = time.perf_counter() - started
        pngs = sum(1 for r in self.records if r.files)
        self._final_line()
        return dissection_digest(
            self.records,
            DissectionSummary(
                records=len(self.records),
                leaf_modules=self.num_leaves,
                png_files=pngs,
                npy_files=pngs,
                seconds=seconds,
                writer_errors=self.writer_errors,
                folder=str(self.out_dir),
            ),
        )

    def _drop_pending(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._release(item[0].nbytes)
            self.queue.task_done()

    def _renumber_if_needed(self) -> None:
        """Zero-pad to the width the record count needs; more calls than leaves can widen it."""
        needed = max(3, len(str(max(len(self.records) - 1, 1))))
        if needed == self.width:
            return
        old_width, self.width = self.width, needed
        for r in self.records:
            if not r.files:
                continue
            old_stem = f"layer_{r.index:0{old_width}d}"
            new_stem = self._file_stem(r.index)
            for suffix in (".png", ".npy"):
                src = self.out_dir / f"{old_stem}{suffix}"
                if src.exists():
                    os.replace(src, self.out_dir / f"{new_stem}{suffix}")
            r.files = [f"{new_stem}.png", f"{new_stem}.npy"]

    def metadata(self, summary: DissectionSummary | None = None, **extra) -> dict:
        """layers_metadata.json: `extra` (model, weights, input shape), the pass's counts, every record."""
        counts = {}
        if summary is not None:  # "records" here takes the place of the count, as the file always had it
            counts = {
                "records": None,
                "leaf_modules": summary.leaf_modules,
                "png_files": summary.png_files,
                "npy_files": summary.npy_files,
                "seconds": summary.seconds,
                "writer_errors": summary.writer_errors,
            }
        return {
            **extra,
            **counts,
            "num_records": len(self.records),
            "records": {f"{r.index:0{self.width}d}": r for r in self.records},
        }


def dissection_digest(records: list[LayerRecord], summary: DissectionSummary) -> DissectionSummary:
    """`summary` with what the report shows of a dissection: counts by type, the extremes, a profile
    across depth."""
    types: dict[str, int] = {}
    for r in records:
        types[r.type] = types.get(r.type, 0) + 1
    with_stats = [r for r in records if r.has_stats]

    def brief(r: LayerRecord, **figure) -> LayerExtreme:
        return LayerExtreme(r.index, r.name, r.call, r.type, **figure, files=r.files or [])

    widest = sorted(with_stats, key=lambda r: -r.range_width)[:5]
    zeros = sorted(with_stats, key=lambda r: -(r.zero_fraction or 0.0))[:5]
    summary.type_counts = dict(sorted(types.items(), key=lambda kv: -kv[1]))
    summary.widest_range = [brief(r, range=[r.min, r.max]) for r in widest]
    summary.most_zeros = [brief(r, zero_fraction=r.zero_fraction) for r in zeros]
    summary.nan_records = sum(1 for r in records if r.nan_count)
    summary.inf_records = sum(1 for r in records if r.inf_count)
    summary.profile = ActivationProfile(
        index=[r.index for r in with_stats], std=[r.std for r in with_stats], absmax=[r.absmax for r in with_stats]
    )
    return summary
