"""Did a change of the code change what the tool reports? Two results files of the same seeded run
(before and after the change) compared: the JSON key paths (list positions folded), and, timings
aside, the figures that must not move: parameters, FLOPs, input shapes, each layer's statistics
(the viz folder's layers_metadata.json), the variants' parity figures, the divergence records'
error figures and culprits, and the sweep points' FLOPs. Prints every difference and a verdict.

    python benchmarks/same_numbers.py BEFORE.json AFTER.json [--ignore-path PREFIX ...]

Made for a refactor: run the same command on both sides, e.g.
    python unified_benchmark.py --weights random --models yolo11n-detect,depth-anything-v2-small \
        --variants torch-fp32,torch-bf16,onnxruntime --divergence --batch-sizes 1,2 --trace --runs 3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# Figures compared exactly (a seeded run on the same machine and thread count is deterministic);
# each a path below a model record, "[]" standing for every list item.
FIXED_FIGURES = (
    "parameters",
    "flops",
    "gflops",
    "input_shape",
    "dtype",
    "weights",
    "status",
    "dissection.records",
    "dissection.leaf_modules",
    "variants[].variant",
    "variants[].status",
    "variants[].parity",
    "divergence[].first_divergent",
    "divergence[].first_propagated",
    "divergence[].records[].name",
    "divergence[].records[].call",
    "divergence[].records[].shape",
    "divergence[].records[].propagated",
    "divergence[].records[].shadow",
    "sweep.points[].dimension",
    "sweep.points[].value",
    "sweep.points[].status",
    "sweep.points[].flops_per_image",
)
LAYER_STATISTICS = ("name", "call", "type", "shape", "min", "max", "mean", "std", "zero_fraction", "nan_count")


def key_paths(value, prefix: str = "") -> set[str]:
    """Every key path in a JSON value, list positions folded into []."""
    paths = {prefix} if prefix else set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths |= key_paths(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{prefix}[]")
    return paths


def values_at(value, path: str) -> list:
    """The values at `path` ('a.b[].c'), in document order; missing keys give nothing."""
    if not path:
        return [value]
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if not isinstance(value, dict) or key not in value:
        return []
    item = value[key]
    items = (item if isinstance(item, list) else []) if many else [item]
    return [found for element in items for found in values_at(element, rest)]


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def layer_records(results_file: Path, model: dict) -> list[dict] | None:
    folder = model.get("dissection", {}).get("folder")
    if not folder:
        return None
    path = Path(folder) / "layers_metadata.json"
    if not path.is_absolute():
        path = results_file.parent.parent / path
    if not path.exists():
        return None
    records = json.loads(path.read_text()).get("records") or {}
    return [records[key] for key in sorted(records)] if isinstance(records, dict) else list(records)


def compare_models(before_file: Path, after_file: Path, before: dict, after: dict) -> list[str]:
    problems = []
    for path in FIXED_FIGURES:
        a, b = values_at(before, path), values_at(after, path)
        if len(a) != len(b) or not all(same(x, y) for x, y in zip(a, b)):
            problems.append(f"{path}: {str(a)[:160]} != {str(b)[:160]}")
    layers_a, layers_b = layer_records(before_file, before), layer_records(after_file, after)
    if (layers_a is None) != (layers_b is None):
        problems.append("layers_metadata.json present on one side only")
    elif layers_a is not None and layers_b is not None:
        if len(layers_a) != len(layers_b):
            problems.append(f"layer records: {len(layers_a)} != {len(layers_b)}")
        for index, (x, y) in enumerate(zip(layers_a, layers_b)):
            differ = [k for k in LAYER_STATISTICS if not same(x.get(k), y.get(k))]
            if differ:
                problems.append(f"layer record {index} ({x.get('name')}): {', '.join(differ)} differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--ignore-path", action="append", default=[], help="a key path prefix to leave out of the path check"
    )
    options = parser.parse_args(argv)
    before, after = (json.loads(p.read_text()) for p in (options.before, options.after))
    paths_a, paths_b = key_paths(before), key_paths(after)
    kept = [p for p in sorted(paths_a ^ paths_b) if not any(p.startswith(i) for i in options.ignore_path)]
    print(f"Key paths: {len(paths_a)} before, {len(paths_b)} after; {len(kept)} differ")
    for path in kept:
        print(f"  {'only before' if path in paths_a else 'only after '}: {path}")
    problems = 0
    models_a = {m["model"]: m for m in before["models"]}
    models_b = {m["model"]: m for m in after["models"]}
    for name in sorted(models_a.keys() | models_b.keys()):
        if name not in models_a or name not in models_b:
            print(f"{name}: on one side only")
            problems += 1
            continue
        found = compare_models(options.before, options.after, models_a[name], models_b[name])
        layers = layer_records(options.before, models_a[name]) or []
        print(f"{name}: {len(found)} difference(s) in the fixed figures and {len(layers)} layer records")
        for line in found:
            print(f"  {line}")
        problems += len(found)
    verdict = "same numbers" if not problems and not kept else "DIFFERENT"
    print(f"Verdict: {verdict} ({problems} figure difference(s), {len(kept)} key path difference(s))")
    return 0 if verdict == "same numbers" else 1


if __name__ == "__main__":
    sys.exit(main())
