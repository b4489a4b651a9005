"""What --divergence costs against a plain forward: peak memory and time, each side in a fresh process.

    python benchmarks/divergence_costs.py [--model depth-anything-v2-large] [--variant torch-bf16]

Three fresh processes, one after the other, each loading the model (random weights) on the CPU:
- `plain-fp32`: two warm pipeline calls in fp32, then three timed ones, their peak resident set;
- `plain-variant`: the same with the variant applied (one warm call, two timed: bf16 is slow on a CPU);
- `divergence`: the tool's divergence passes (divergence.run_divergence) on a fresh instance, their peak.
Prints each peak (absolute and over the resident set after the load), the ratio of the divergence peak
to each plain peak (target: within 20%), and the passes' time in forward passes: the reference pass
against the fp32 median, the variant pass and the shadow calls against the variant's median (target: 3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench_common import ROOT, bus_path, import_tool, load_bench


def child(mode: str, model: str, variant_name: str) -> dict:
    import torch

    from vision_bench.divergence.divergence_pass import hooked_variant
    from vision_bench.divergence.layer_passes import run_divergence
    from vision_bench.images import load_rgb
    from vision_bench.measure.memory import MemoryTracker
    from vision_bench.records.codec import to_json

    torch.set_grad_enabled(False)
    ub = import_tool()
    image = load_rgb(bus_path())
    tracker = MemoryTracker(torch.device("cpu"))
    bench = load_bench(ub, model, lambda line: print(line, file=sys.stderr))
    after_load = tracker.rss()
    variant = hooked_variant(bench, variant_name)
    out = {"mode": mode, "after_load": after_load}
    if mode == "divergence":
        tracker.reset_peak()
        result = run_divergence(bench, variant, image)
        out.update(
            peak=tracker.peak_reading().cpu_peak_rss_bytes,
            passes=to_json(result.passes),
            spilled=result.spilled_bytes,
            first=to_json(result.first_divergent) if result.first_divergent else None,
            records=len(result.records),
        )
        return out
    warm, timed = (2, 3) if mode == "plain-fp32" else (1, 2)
    if mode == "plain-variant":
        variant.apply(bench)
    for _ in range(warm):
        bench.run_pipeline(image)
    tracker.reset_peak()
    seconds = []
    for _ in range(timed):
        start = time.perf_counter()
        bench.run_pipeline(image)
        seconds.append(time.perf_counter() - start)
    out.update(peak=tracker.peak_reading().cpu_peak_rss_bytes, median_s=statistics.median(seconds), runs_s=seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="depth-anything-v2-large")
    parser.add_argument("--variant", default="torch-bf16")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.variant)))
        return
    figures = {}
    for mode in ("plain-fp32", "plain-variant", "divergence"):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--variant", args.variant, "--child", mode],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if done.returncode:
            sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
        figures[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        f = figures[mode]
        print(
            f"{mode}: peak {f['peak'] / 2**20:.0f} MB ({(f['peak'] - f['after_load']) / 2**20:.0f} MB over the "
            f"{f['after_load'] / 2**20:.0f} MB after the load)"
            + (f", median {f['median_s']:.2f} s of {[round(s, 2) for s in f['runs_s']]}" if "median_s" in f else "")
            + f"; process {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    d = figures["divergence"]
    for plain in ("plain-fp32", "plain-variant"):
        print(f"divergence peak / {plain} peak: {d['peak'] / figures[plain]['peak']:.3f} (target <= 1.20)")
    p = d["passes"]
    fp32, var = figures["plain-fp32"]["median_s"], figures["plain-variant"]["median_s"]
    parts = {
        "reference pass": p["reference_s"] / fp32,
        "variant pass": p["variant_s"] / var,
        "shadow calls": p["shadow_s"] / var,
    }
    spill = (p["spill_wait_s"] + p.get("spill_copy_s", 0.0)) / fp32
    print(
        "passes in forward passes: "
        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        + f"; total {sum(parts.values()):.2f}, of which the spill in the hooks (outputs copied to the host "
        f"{p.get('spill_copy_s', 0):.2f} s, waiting for the queue {p['spill_wait_s']:.2f} s) {spill:.2f}: without it "
        f"{sum(parts.values()) - spill:.2f} (target <= 3 plus the writes); the writer thread's writes took "
        f"{p.get('spill_write_s', 0):.2f} s of CPU ({p.get('spill_write_s', 0) / fp32:.2f} fp32 forwards) beside the "
        f"reference pass, on the same cores; {d['spilled'] / 2**30:.2f} GB spilled; {d['records']} records, first divergent: "
        + (f"{d['first']['name']} (own {d['first']['own']:.3g})" if d["first"] else "none")
    )


if __name__ == "__main__":
    main()
