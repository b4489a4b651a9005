"""Variants of yolo11n-detect and depth-anything-v2-small on this machine: each variant's forward
median, speed-up against torch-fp32 and parity, from one run of the tool as a user runs it; the
whole run's wall time; and a cross-check of the onnxruntime figure against a bare ONNX Runtime
session timed outside the tool on the same input.

    python benchmarks/variants.py [--runs 5] [--skip-crosscheck]

Targets (issue 12): onnxruntime normalised error of the raw outputs < 1e-3 on both photos for both
models; the five-variant run of the two models under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, TOOL, load_note

MODELS = "yolo11n-detect,depth-anything-v2-small"
VARIANTS = "torch-fp32,torch-bf16,torch-channels-last,torch-compile,onnxruntime"
TARGET_ERROR, TARGET_WALL_S = 1e-3, 600


def run_tool(out: Path, runs: int) -> tuple[dict, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [
        sys.executable,
        str(TOOL),
        "--weights",
        "random",
        "--models",
        MODELS,
        "--variants",
        VARIANTS,
        "--runs",
        str(runs),
        "--output-dir",
        str(out),
        "--models-dir",
        str(out / "models"),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the tool failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(next((out / "results").glob("benchmark_results_*.json")).read_text()), wall


def print_table(data: dict) -> None:
    print(
        f"{'model':<22} {'variant':<20} {'forward ms':>10} {'speed-up':>8}  {'parity':<6} {'worst norm. error':>17}"
        "  task level / reason"
    )
    for m in data["models"]:
        for v in m.get("variants") or []:
            if v["status"] != "complete":
                print(
                    f"{m['model']:<22} {v['variant']:<20} {'':>10} {'':>8}  {v['status']:<6} {'':>17}  {v.get('reason')}"
                )
                continue
            worst = (v.get("parity") or {}).get("worst") or {}
            error = (
                "reference"
                if v.get("reference")
                else f"{worst.get('normalised_error'):.2e} ({worst.get('worst_part')})"
            )
            task = (
                ""
                if v.get("reference")
                else ", ".join(
                    f"{k} {worst[k]:.3g}"
                    for k in ("depth_mean_relative_error", "depth_p99_relative_error", "min_mean_iou")
                    if worst.get(k) is not None
                )
            )
            print(
                f"{m['model']:<22} {v['variant']:<20} {v['latency_forward']['median'] * 1000:>10.1f} "
                f"{v['speedup_forward']:>7.2f}x  {(v.get('parity') or {}).get('verdict', 'ref'):<6} {error:>17}  {task}"
            )


def onnx_error_per_image(data: dict) -> list[tuple[str, str, float]]:
    out = []
    for m in data["models"]:
        for v in m.get("variants") or []:
            if v["variant"] == "onnxruntime" and v["status"] == "complete":
                out += [(m["model"], img["image"], img["raw"]["normalised_error"]) for img in v["parity"]["per_image"]]
    return out


def crosscheck_onnxruntime(data: dict, repeats: int = 15) -> None:
    """A bare ONNX Runtime session on the file the tool exported, fed the processor's tensor of
    bus.jpg, timed in a plain loop: its median against the tool's forward median on that image."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import onnxruntime as ort
    import torch
    from ultralytics.utils import ASSETS

    import unified_benchmark
    from vision_bench.images import load_rgb

    model = next(m for m in data["models"] if m["cli_name"] == "depth-anything-v2-small")
    variant = next(v for v in model["variants"] if v["variant"] == "onnxruntime")
    bench = unified_benchmark.DepthAnythingV2SmallBenchmark(torch.device("cpu"), weights="random")
    bench.load()
    pixels = bench.preprocess(load_rgb(Path(ASSETS) / "bus.jpg"))["pixel_values"].numpy()
    path = next(f for f in variant["details"]["files"] if "x".join(map(str, pixels.shape)) in f)
    options = ort.SessionOptions()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session.run(None, {"pixel_values": pixels})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"pixel_values": pixels})
        times.append(time.perf_counter() - start)
    tool = statistics.median(
        r["forward_s"] for r in variant["runs"] if r["kind"] == "timed" and r["image"] == "bus.jpg"
    )
    bare = float(np.median(times))
    print(
        f"cross-check, DA-small onnxruntime on bus.jpg: tool forward median {tool * 1000:.1f} ms, bare session "
        f"median of {repeats} {bare * 1000:.1f} ms, ratio {tool / bare:.3f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per image (the tool's --runs)")
    parser.add_argument("--skip-crosscheck", action="store_true")
    options = parser.parse_args()
    print(load_note())
    with tempfile.TemporaryDirectory() as tmp:
        data, wall = run_tool(Path(tmp), options.runs)
        print_table(data)
        errors = onnx_error_per_image(data)
        for model, image, error in errors:
            print(
                f"onnxruntime normalised error, {model} on {image}: {error:.2e} "
                f"({'PASS' if error < TARGET_ERROR else 'FAIL'}, target < {TARGET_ERROR:g})"
            )
        print(
            f"whole run: {wall:.0f} s wall ({'PASS' if wall < TARGET_WALL_S else 'FAIL'}, target < {TARGET_WALL_S} s); "
            f"variants phase {sum((m.get('phase_seconds') or {}).get('variants', 0) for m in data['models']):.0f} s"
        )
        if not options.skip_crosscheck:
            crosscheck_onnxruntime(data)
        print(load_note())


if __name__ == "__main__":
    main()
