#!/usr/bin/env python3
"""Where a layer dissection's time goes, and how its file writing scales with threads.

CPU, random weights, bus.jpg, the tool's own code (unified_benchmark.py is imported, not edited):

  1. forward and dissection, alternating, --rounds times: wall-clock medians and their ratio (the
     figure issue 31 targets: at most 2x on depth-anything-v2-small);
  2. per part, in CPU seconds of the thread that did it: the statistics (in the hooks), the PNG
     rendering and the NPY saving (in the writer threads), and the rest of the dissection's CPU
     time beyond a forward (hooks, host copies, the queue);
  3. the writing alone (PNG + NPY of every record's planes) with 1, 2, ... writer threads: how it
     scales with cores on this machine (a workstation has 8-32).

    python benchmarks/dissect_parts.py
    python benchmarks/dissect_parts.py --model yolo11n-detect --rounds 5 --threads 1,2,4
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_common import bus_path, import_tool, load_bench, load_note

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np

import vision_bench.inspect.dissection as dissection
from vision_bench.common import first_tensor, leaf_modules
from vision_bench.images import load_rgb


class PartClock:
    """CPU seconds of the calling thread spent in each wrapped function of the dissection module."""

    def __init__(self, names: list[str]):
        self.seconds = dict.fromkeys(names, 0.0)
        self.originals = {name: getattr(dissection, name) for name in names}

    def install(self) -> None:
        for name, original in self.originals.items():
            setattr(dissection, name, self.timed(name, original))

    def timed(self, name, function):
        def call(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.thread_time() - start

        return call

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def save_npy(path, planes) -> None:
    np.save(path, planes[: dissection.DISSECT_NPY_CHANNELS])


def alternate(bench, image, rounds: int, clock: PartClock) -> None:
    forwards, dissections, forward_cpu, dissection_cpu, parts = [], [], [], [], []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        bench.run_pipeline(image)
        forwards.append(time.perf_counter() - start)
        forward_cpu.append(time.process_time() - cpu)
        clock.reset()
        with tempfile.TemporaryDirectory() as folder:
            start, cpu = time.perf_counter(), time.process_time()
            bench.dissect_layers(image, Path(folder))
            dissections.append(time.perf_counter() - start)
            dissection_cpu.append(time.process_time() - cpu)
        parts.append(dict(clock.seconds))
    forward, dissect = statistics.median(forwards), statistics.median(dissections)
    print(f"forward {forward:.3f} s, dissection {dissect:.3f} s: {dissect / forward:.2f}x (medians of {rounds})")
    print(f"  every round's ratio: {', '.join(f'{d / f:.2f}' for f, d in zip(forwards, dissections))}")
    extra = statistics.median(dissection_cpu) - statistics.median(forward_cpu)
    named = {name: statistics.median(p[name] for p in parts) for name in clock.seconds}
    print(f"CPU seconds beyond a forward's {statistics.median(forward_cpu):.2f}: {extra:.2f}, of which")
    for name, seconds in named.items():
        print(f"  {name:20s} {seconds:6.3f}")
    print(f"  {'the rest':20s} {extra - sum(named.values()):6.3f}  (NPY saving, hooks, host copies, queue)")


def captured_planes(bench, image) -> list[np.ndarray]:
    """Every record's host planes, as the hooks hand them to the writers."""
    hw = tuple(bench.input_shape[-2:]) if bench.input_shape and len(bench.input_shape) == 4 else None
    planes: list[np.ndarray] = []

    def keep(module, args, output):
        tensor, _ = first_tensor(output)
        if tensor is not None and tensor.is_floating_point():
            grid, _ = dissection.feature_planes(tensor, hw)
            if grid is not None and grid.numel():
                planes.append(grid.detach().float().cpu().numpy().copy())

    handles = [m.register_forward_hook(keep) for _, m in leaf_modules(bench.network())]
    try:
        bench.run_pipeline(image)
    finally:
        for handle in handles:
            handle.remove()
    return planes


def writer_scaling(planes: list[np.ndarray], thread_counts: list[int], rounds: int) -> None:
    def write_all(folder: Path, threads: int) -> None:
        def one(item):
            index, grid = item
            save_npy(folder / f"{index}.npy", grid)
            dissection.render_feature_grid(grid, folder / f"{index}.png")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, enumerate(planes)))

    times: dict[int, list[float]] = {n: [] for n in thread_counts}
    for _ in range(rounds):
        for n in thread_counts:
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                write_all(Path(folder), n)
                times[n].append(time.perf_counter() - start)
    one_thread = statistics.median(times[thread_counts[0]])
    print(f"writing {len(planes)} records' PNG + NPY ({sum(p.nbytes for p in planes) / 1e6:.0f} MB of planes):")
    for n in thread_counts:
        median = statistics.median(times[n])
        print(f"  {n} thread(s): {median:.3f} s, {one_thread / median:.2f}x the speed of {thread_counts[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="depth-anything-v2-small")
    parser.add_argument("--rounds", type=int, default=3, help="forward/dissection pairs (default: 3)")
    parser.add_argument("--threads", default="1,2", help="writer thread counts to time (default: 1,2)")
    args = parser.parse_args()
    print(f"[dissect_parts] {load_note()}; {os.cpu_count()} CPUs")
    clock = PartClock(["tensor_stats", "render_feature_grid"])
    clock.install()
    bench = load_bench(import_tool(), args.model, print)
    image = load_rgb(bus_path())
    bench.count_flops_and_input(image)
    bench.run_pipeline(image)  # warm-up
    alternate(bench, image, args.rounds, clock)
    writer_scaling(captured_planes(bench, image), [int(n) for n in args.threads.split(",")], args.rounds)
    print(f"[dissect_parts] {load_note()}")


if __name__ == "__main__":
    main()
