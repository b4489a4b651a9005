"""The report's charts: latency per model, memory against size, activations across depth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..records.model_result import ModelResult


def plot_style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def latency_chart(results: list[ModelResult], path: Path) -> bool:
    timed: list[Any] = [r for r in results if r.cold_start]  # timed: its latency figures are there
    if not timed:
        return False
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(timed) + 2), 3.8), constrained_layout=True)
    x = np.arange(len(timed))
    for i, r in enumerate(timed):
        e2e = r.latency_end_to_end
        if e2e.n:
            ax.errorbar(
                i,
                e2e.median * 1000,
                yerr=[[(e2e.median - e2e.p10) * 1000], [(e2e.p90 - e2e.median) * 1000]],
                fmt="o",
                color="black",
                capsize=4,
                label="warm median (p10-p90)" if i == 0 else None,
            )
        ax.plot(
            i,
            r.cold_start.total_s * 1000,
            marker="^",
            mfc="white",
            mec="black",
            ls="none",
            label="cold start (first run)" if i == 0 else None,
        )
    ax.set_xticks(x, [r.model for r in timed], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end latency (ms, log scale)")
    ax.legend(loc="best")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


CHART_MARKERS = "osD^vP*Xh<>p"


def memory_chart(results: list[ModelResult], path: Path) -> bool:
    points: list[Any] = [r for r in results if r.parameters and r.memory and r.memory.peak_bytes]
    if not points:
        return False
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for i, r in enumerate(points):
        ax.plot(
            r.parameters / 1e6,
            r.memory.peak_over_baseline_bytes / 1024**2,
            CHART_MARKERS[i % len(CHART_MARKERS)],
            color="black",
            mfc="white" if i % 2 else "black",
            ms=7,
            ls="none",
            label=f"{r.model} ({r.gflops or 0:.1f} GFLOPs)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("model's own share of peak memory (MB)")
    ax.set_title(f"Peak memory ({points[0].memory.peak_kind}) against size", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def activation_profile_chart(result: ModelResult, path: Path) -> bool:
    dissection = result.dissection
    profile = dissection.profile if dissection else None
    if not profile or not profile.index:
        return False
    plt = plot_style()
    fig, ax = plt.subplots(figsize=(7, 2.6), constrained_layout=True)
    floor = 1e-12  # log scale: a zero std (constant output) is drawn at the floor
    ax.plot(profile.index, [max(v or 0, floor) for v in profile.absmax], color="black", lw=0.8, label="|max|")
    ax.plot(profile.index, [max(v or 0, floor) for v in profile.std], color="gray", lw=0.8, ls="--", label="std")
    ax.set_yscale("log")
    ax.set_xlabel("record (execution order)")
    ax.set_ylabel("activation (log scale)")
    ax.set_title(f"{result.model}: activation profile across depth")
    ax.legend(loc="best")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
