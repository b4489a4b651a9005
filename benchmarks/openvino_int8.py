"""OpenVINO and INT8 variants (issue 30): from a results file of the tool (run with torch-fp32,
torch-bf16 and the new variants), each new variant's forward speed-up against torch-fp32 and against
torch-bf16 with a bootstrap 95% interval, its parity verdict and worst part; then the OpenVINO fp32
cross-check: the tool's forward (the variant prepared as the tool prepares it) against a bare
openvino.Core().compile_model(...) loop on the same input, interleaved in this process.

    python benchmarks/openvino_int8.py RESULTS.json [--repeats 15] [--models-dir DIR]

Targets: openvino's normalised error < 1e-3; its forward median within 10% of the bare loop's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from bench_common import bus_path, import_tool, load_bench, load_note

NEW = ("openvino", "openvino-bf16", "openvino-int8", "onnxruntime-int8")
REFERENCES = ("torch-fp32", "torch-bf16")
TARGET_ERROR, TARGET_RATIO = 1e-3, 0.10


def forward_times(variant: dict) -> list[float]:
    return [r["forward_s"] for r in variant.get("runs") or [] if r["kind"] == "timed"]


def speedup(reference: list[float], mine: list[float], resamples: int = 2000) -> tuple[float, float, float]:
    """median(reference) / median(mine), and the 2.5th and 97.5th percentiles of the same ratio over
    bootstrap resamples of both sets of timed runs (seeded: the same file gives the same interval)."""
    rng = random.Random(0)
    ratios = sorted(
        statistics.median(rng.choices(reference, k=len(reference))) / statistics.median(rng.choices(mine, k=len(mine)))
        for _ in range(resamples)
    )
    point = statistics.median(reference) / statistics.median(mine)
    return point, ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def print_table(data: dict) -> None:
    for model in data["models"]:
        rows = {v["variant"]: v for v in model.get("variants") or []}
        for name in NEW:
            v = rows.get(name)
            if v is None:
                continue
            if v["status"] != "complete":
                print(f"{model['model']:<22} {name:<17} {v['status']}: {v.get('reason')}")
                continue
            mine = forward_times(v)
            parts = [f"{model['model']:<22} {name:<17} forward median {statistics.median(mine) * 1000:8.1f} ms"]
            for ref in REFERENCES:
                if rows.get(ref, {}).get("status") == "complete":
                    # the reference's row repeats the model's figures, not its runs: those are the model's own
                    point, low, high = speedup(forward_times(model if rows[ref].get("reference") else rows[ref]), mine)
                    parts.append(f"vs {ref} {point:.2f}x [{low:.2f}, {high:.2f}]")
            parity = v["parity"]
            worst = parity["worst"]
            parts.append(
                f"parity {parity['verdict']} ({parity['tolerance']} limits), worst normalised error "
                f"{worst.get('normalised_error'):.3g} in {worst.get('worst_part')}"
            )
            if parity.get("reasons"):
                parts.append("; ".join(parity["reasons"][:2]))
            print(", ".join(parts))
            if v["details"].get("calibration"):
                print(
                    f"{'':<40} calibration: {v['details']['calibration']}; {v['details']['float_nodes']} node(s) in float"
                )


def bare_crosscheck(cli_name: str, repeats: int, models_dir: Path) -> None:
    """The variant as the tool prepares it, timed as the tool times a forward, against a bare compiled
    model on the same input array, alternating call by call."""
    import numpy as np
    import openvino as ov

    from vision_bench.images import load_rgb
    from vision_bench.variants.openvino import F32
    from vision_bench.variants.openvino_runtime import LATENCY
    from vision_bench.variants.registry import prepare_variant

    ub = import_tool()
    image = load_rgb(bus_path())
    bench = load_bench(ub, cli_name, print)
    bench.models_dir = models_dir
    tensor = bench.network_input(image)
    details = prepare_variant(bench, "openvino", [(bus_path(), image)])
    xml = next(f for f in details.files or [] if "x".join(map(str, tensor.shape)) in f or "dynamic" in f)
    compiled = ov.Core().compile_model(xml, "CPU", LATENCY | F32)
    array = tensor.numpy()
    inputs = bench.preprocess(image) if cli_name != "yolo11n-detect" else None

    def tool_forward() -> float:
        if inputs is None:  # ultralytics: the predictor's own inference time, as the tool records it
            return bench.run_pipeline(image)[1]["forward"]
        return bench.three_phases(lambda: inputs, lambda outputs: None)[1]["forward"]

    def bare() -> float:
        start = time.perf_counter()
        compiled(array)
        return time.perf_counter() - start

    tool_forward(), bare()
    tool_times, bare_times = [], []
    for _ in range(repeats):
        tool_times.append(tool_forward())
        bare_times.append(bare())
    tool, plain = float(np.median(tool_times)), float(np.median(bare_times))
    ratio = tool / plain
    verdict = "PASS" if abs(ratio - 1) <= TARGET_RATIO else "FAIL"
    print(
        f"{cli_name} openvino on bus.jpg ({details.provider}): tool forward median {tool * 1000:.1f} ms, bare "
        f"compile_model loop {plain * 1000:.1f} ms over {repeats} alternating calls, ratio {ratio:.3f} ({verdict}, "
        f"target within {TARGET_RATIO:.0%})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--skip-crosscheck", action="store_true")
    options = parser.parse_args()
    print(load_note())
    data = json.loads(options.results.read_text())
    print_table(data)
    for model in data["models"]:
        for v in model.get("variants") or []:
            if v["variant"] == "openvino" and v["status"] == "complete":
                for image in v["parity"]["per_image"]:
                    error = image["raw"]["normalised_error"]
                    print(
                        f"openvino normalised error, {model['model']} on {image['image']}: {error:.2e} "
                        f"({'PASS' if error < TARGET_ERROR else 'FAIL'}, target < {TARGET_ERROR:g})"
                    )
    if not options.skip_crosscheck:
        for cli_name in ("depth-anything-v2-small", "yolo11n-detect"):
            bare_crosscheck(cli_name, options.repeats, options.models_dir)
    print(load_note())


if __name__ == "__main__":
    main()
