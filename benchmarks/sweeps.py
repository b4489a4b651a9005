"""How cost grows, measured on this machine (issue 20), with random weights on the CPU:

1. the tool as a user runs it: yolo11n-detect at batch 1..16 and input 320..1024, and
   depth-anything-v2-small at batch 1..8; its wall time (target: under 15 minutes), each model's best
   throughput, knee, and the knee's throughput against batch 1;
2. again with --memory-limit set between the resident peaks of batch 8 and batch 16 measured in 1:
   the edge found and bisected to one step, the memory model's predicted largest batch against it
   (target: within one step), and the next model (yolo11n-pose) still runs;
3. one throughput point checked against an independent loop: yolo11n-detect's network on the same
   batched tensor, timed by torch.utils.benchmark, beside the tool's own batched call in the same
   process, alternating (target: forward medians within 10%).

    python benchmarks/sweeps.py [--runs 6] [--threads 1] [--output-dir DIR] [--results A.json ...] [--skip-tool]

With --results, the figures of earlier runs are printed and the tool does not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import TOOL, import_tool, load_bench, load_note

TARGET_WALL_S = 15 * 60
CHECK_BATCH = 8
TARGET_AGREEMENT = 0.10


THREADS = ["--threads", "1"]  # set in main()


def run_tool(out: Path, *args: str) -> tuple[Path, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [
        sys.executable,
        str(TOOL),
        "--weights",
        "random",
        "--device",
        "cpu",
        "--no-dissect",
        "--keep-going",
        "--output-dir",
        str(out),
        *THREADS,
        *args,
    ]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    log = out / "tool.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        code = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    print(f"  exit {code}, {wall:.0f} s wall ({log})", flush=True)
    [path] = sorted((out / "results").glob("benchmark_results_*.json"))
    return path, wall


def mb(value) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def describe(path: Path) -> dict:
    """Print every model's points and analysis; return {cli_name: batch peak bytes by batch}."""
    data = json.loads(path.read_text())
    print(f"\n{path}: status {data['status']}, wall {data['total_seconds']:.0f} s")
    peaks = {}
    for r in data["models"]:
        sweep = r.get("sweep")
        print(f"- {r['model']}: {r['status']}" + ("" if sweep else " (no sweep)"))
        if not sweep:
            continue
        for dimension, reason in sweep["unsupported"].items():
            print(f"    {dimension}: unsupported ({reason})")
        print(
            f"    {'point':<18}{'status':<9}{'ms/batch':>10}{'img/s':>8}{'[95% CI]':>18}{'peak MB':>9}{'GFLOP/img':>10}"
        )
        for p in sweep["points"]:
            lat, thr = p.get("latency_end_to_end") or {}, p.get("throughput") or {}
            ci = f"[{thr['ci95_low']:.2f}, {thr['ci95_high']:.2f}]" if thr.get("ci95_low") else ""
            print(
                f"    {p['dimension'] + ' ' + str(p['value']) + (' b' if p.get('bisect') else ''):<18}{p['status']:<9}"
                f"{(lat.get('median') or 0) * 1000:>10.1f}{thr.get('median') or 0:>8.2f}{ci:>18}"
                f"{mb((p.get('memory') or {}).get('peak_bytes')):>9}"
                f"{(p.get('flops_per_image') or 0) / 1e9:>10.2f}"
            )
        peaks[r["cli_name"]] = {
            p["value"]: p["memory"]["peak_bytes"]
            for p in sweep["points"]
            if p["dimension"] == "batch" and p["status"] == "ok"
        }
        a = sweep.get("batch_analysis")
        if a:
            knee = a["knee"]
            fit = a.get("memory_fit") or {}
            print(
                f"    best {a['best']['throughput']:.2f} img/s at batch {a['best']['batch']}; knee batch {knee['batch']} "
                f"({knee['throughput']:.2f} img/s, {knee.get('speedup_over_batch_1', float('nan')):.2f}x batch 1); "
                f"edge {a['edge']}; fit a {mb(fit.get('a'))} MB + b {mb(fit.get('b'))} MB/image (max residual "
                f"{mb(fit.get('max_residual'))} MB); limit {mb((sweep.get('limit') or {}).get('bytes'))} MB "
                f"({(sweep.get('limit') or {}).get('kind')}); predicted largest batch {a.get('predicted_max_batch')}"
                + (
                    f", {a['prediction_minus_edge']:+d} against the measured edge"
                    if a.get("prediction_minus_edge") is not None
                    else ""
                )
            )
        s = sweep.get("input_size_analysis")
        if s and s.get("memory_fit"):
            print(
                f"    memory vs pixels: {mb(s['memory_fit']['a'])} MB + {s['memory_fit']['b']:.1f} bytes/pixel; "
                f"latency vs pixels: {s['latency_fit']['b'] * 1e9:.2f} ms per megapixel"
            )
        if sweep.get("worker_deaths"):
            print(f"    workers died at: {sweep['worker_deaths']}")
    return peaks


def cross_check(runs: int) -> None:
    """yolo11n-detect at batch CHECK_BATCH: the tool's batched call (its forward phase) and
    torch.utils.benchmark on the network with the same preprocessed tensor, alternating."""
    import numpy as np
    import torch
    from bench_common import bus_path
    from PIL import Image
    from torch.utils import benchmark

    ub = import_tool()
    torch.set_num_threads(int(THREADS[1]))
    bench = load_bench(ub, "yolo11n-detect", print)
    image = Image.open(bus_path()).convert("RGB")
    images = [image] * CHECK_BATCH
    predictor = bench.ul_model.predictor
    bench.run_batch(images)  # warm: the predictor set up for a batch of this shape
    x = predictor.preprocess([np.asarray(image)[..., ::-1] for image in images])  # BGR arrays, as its loader gives
    network = predictor.model
    print(f"\nCross-check at batch {CHECK_BATCH}, tensor {list(x.shape)}:")
    tool, independent = [], []
    timer = benchmark.Timer(
        stmt="network(x)", globals={"network": network, "x": x}, num_threads=torch.get_num_threads()
    )
    with torch.inference_mode():
        network(x)
        for _ in range(runs):
            _, seconds, phases = bench.timed_call(lambda: bench.run_batch(images))
            tool.append((seconds, phases["forward"]))
            independent.append(timer.timeit(1).median)
    e2e, fwd = np.median([t[0] for t in tool]), np.median([t[1] for t in tool])
    ind = float(np.median(independent))
    print(
        f"  tool: end to end {e2e * 1000:.1f} ms a batch ({CHECK_BATCH / e2e:.2f} img/s), forward {fwd * 1000:.1f} ms "
        f"({CHECK_BATCH / fwd:.2f} img/s of forward)"
    )
    print(f"  torch.utils.benchmark on network(x): {ind * 1000:.1f} ms ({CHECK_BATCH / ind:.2f} img/s)")
    print(
        f"  forward ratio tool / independent: {fwd / ind:.3f} (target within {TARGET_AGREEMENT:.0%}: "
        f"{'met' if abs(fwd / ind - 1) <= TARGET_AGREEMENT else 'NOT met'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, nargs="+", default=None)
    parser.add_argument("--skip-tool", action="store_true", help="only the cross-check")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads' OpenMP barriers "
        "wait for a descheduled thread and a run takes 10-60x longer)",
    )
    args = parser.parse_args()
    THREADS[1] = str(args.threads)
    print(load_note())
    if args.results:
        for path in args.results:
            describe(path)
    elif not args.skip_tool:
        out = args.output_dir or Path(tempfile.mkdtemp(prefix="sweeps_"))
        # one option list for every model of a run: the two models' sweeps are two runs, their wall times summed
        first, wall = run_tool(
            out / "yolo",
            "--models",
            "yolo11n-detect",
            "--runs",
            str(args.runs),
            "--batch-sizes",
            "1,2,4,8,16",
            "--input-sizes",
            "320,480,640,800,1024",
        )
        depth, wall_depth = run_tool(
            out / "depth", "--models", "depth-anything-v2-small", "--runs", str(args.runs), "--batch-sizes", "1,2,4,8"
        )
        print(
            f"1. wall {wall:.0f} s + {wall_depth:.0f} s = {wall + wall_depth:.0f} s against the target "
            f"{TARGET_WALL_S} s ({'met' if wall + wall_depth < TARGET_WALL_S else 'NOT met'})"
        )
        peaks = describe(first)["yolo11n-detect"]
        describe(depth)
        limit = (peaks[8] + peaks[16]) // 2
        print(
            f"2. --memory-limit {limit} bytes ({mb(limit)} MB), between batch 8 ({mb(peaks[8])} MB) and 16 "
            f"({mb(peaks[16])} MB)"
        )
        second, wall = run_tool(
            out / "limit",
            "--models",
            "yolo11n-detect,yolo11n-pose",
            "--runs",
            str(args.runs),
            "--batch-sizes",
            "1,2,4,8,16",
            "--memory-limit",
            str(limit),
        )
        describe(second)
    cross_check(max(args.runs, 7))
    print(load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
