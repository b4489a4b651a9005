"""The shipped Slurm scripts on a real one-node cluster: slurm/submit.sh runs three models as a
job array of three shards and merges them (the same models, parameters and FLOPs as one local
run), and a cancelled task leaves its model failed in the merged report with its log named and
the merge job failed. Skipped where Slurm cannot start (no root, packages missing), unless
VISION_BENCH_REQUIRE_SLURM=1 (set by .ci/run): there a skip would hide the test, so it fails."""

import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, load_run, run_cli
from slurm_cluster import OneNodeCluster, unavailable_reason

SUBMIT = ROOT / "slurm" / "submit.sh"
MODELS = ["yolo11n-detect", "yolo11n-pose", "depth-anything-v2-small"]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("VISION_BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"VISION_BENCH_REQUIRE_SLURM=1 but no Slurm cluster can start here: {reason}")
        pytest.skip(reason)
    with OneNodeCluster() as started:
        TIMINGS["cluster up"] = started.timings["up_s"]
        yield started
    TIMINGS["cluster down"] = started.timings["down_s"]
    print("\n[slurm test timings] " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def tool_options(sample_image, runs: int) -> list[str]:
    return [
        "--weights",
        "random",
        "--models",
        ",".join(MODELS),
        "--runs",
        str(runs),
        "--warmup",
        "0",
        "--no-dissect",
        "--images",
        str(sample_image),
    ]


def submit(cluster, out: Path, options: list[str], sbatch: str = "") -> tuple[str, str]:
    """slurm/submit.sh as a user types it; returns the array and merge job ids it prints."""
    import subprocess

    proc = subprocess.run(
        ["bash", str(SUBMIT), "--shards", "3", "--cpus", "1", "--sbatch", sbatch, "--output-dir", str(out), *options],
        env={**cluster.env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    array = re.search(r"^Array job: (\d+) \(3 task\(s\), 1 CPU\(s\) each\)$", proc.stdout, re.MULTILINE)
    merge = re.search(r"^Merge job: (\d+)", proc.stdout, re.MULTILINE)
    assert array and merge, proc.stdout
    assert f"Report: {out}/merged/{array.group(1)}/results/" in proc.stdout
    return array.group(1), merge.group(1)


def wait(cluster, array: str, merge: str) -> tuple[list[dict], dict]:
    start = time.monotonic()
    tasks = cluster.wait_for_jobs([array])[array]
    TIMINGS.setdefault("array", time.monotonic() - start)
    start = time.monotonic()
    merged = cluster.wait_for_jobs([merge])[merge][0]
    TIMINGS.setdefault("merge", time.monotonic() - start)
    return sorted(tasks, key=lambda t: int(t["ArrayTaskId"])), merged


def logs_of(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted((out / "logs").glob("*")))


def test_the_shipped_array_of_three_shards_merges_to_what_a_local_run_measures(cluster, sample_image, tmp_path):
    out = tmp_path / "cluster"
    start = time.monotonic()
    # Each task has the node to itself (--exclusive, passed through --sbatch), one at a time, as a task
    # should have its GPU to itself: its medians are then comparable with a local run on one thread.
    array, merge = submit(cluster, out, tool_options(sample_image, runs=6), sbatch="--exclusive")
    tasks, merged_job = wait(cluster, array, merge)
    TIMINGS["submit to merged"] = time.monotonic() - start
    assert [(t["ArrayTaskId"], t["JobState"], t["ExitCode"]) for t in tasks] == [
        (str(i), "COMPLETED", "0:0") for i in range(3)
    ], logs_of(out)
    assert (merged_job["JobState"], merged_job["ExitCode"]) == ("COMPLETED", "0:0"), logs_of(out)

    # Each task ran its own shard in its own folder, with the task's CPUs as its threads.
    shard_models = []
    for task in range(3):
        data = load_run(out / "shards" / array / str(task))["json"]
        shard = data["config"]["shard"]
        assert (shard["index"], shard["count"]) == (task, 3)
        assert shard["slurm"]["array_job_id"] == array and shard["slurm"]["array_task_id"] == str(task)
        assert data["config"]["torch_threads"] == 1 and data["status"] == "complete"  # SLURM_CPUS_PER_TASK
        assert [m["cli_name"] for m in data["models"]] == shard["models"]
        shard_models += shard["models"]
    assert sorted(shard_models) == sorted(MODELS)  # every model once

    merged = load_run(out / "merged" / array)
    data = merged["json"]
    assert data["status"] == "complete" and data["shards"]["missing"] == []
    assert [m["cli_name"] for m in data["models"]] == MODELS and {m["status"] for m in data["models"]} == {"complete"}
    md = merged["md_path"].read_text()
    assert "Shards of one job array (--shard I/3): 3 of 3 wrote results." in md

    local_out = tmp_path / "local"
    proc = run_cli(*tool_options(sample_image, runs=6), "--threads", "1", "--output-dir", local_out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    local = load_run(local_out)["json"]
    assert [m["cli_name"] for m in local["models"]] == MODELS
    rows = []
    for mine, theirs in zip(data["models"], local["models"]):
        for key in ("model", "parameters", "flops", "input_shape", "weights", "dtype"):
            assert mine[key] == theirs[key], (mine["model"], key, mine[key], theirs[key])
        a, b = mine["latency_end_to_end"], theirs["latency_end_to_end"]
        rows.append(
            f"{mine['model']}: params {mine['parameters']:,}, GFLOPs {mine['gflops']:.2f}; median end to end "
            f"cluster {a['median'] * 1e3:.1f} ms [{a['ci95_low'] * 1e3:.1f}, {a['ci95_high'] * 1e3:.1f}], "
            f"local {b['median'] * 1e3:.1f} ms [{b['ci95_low'] * 1e3:.1f}, {b['ci95_high'] * 1e3:.1f}]"
        )
    print("\n[slurm merged vs local]\n" + "\n".join(rows))


def test_a_cancelled_task_leaves_its_model_failed_with_its_log_and_the_merge_job_failed(
    cluster, sample_image, tmp_path, ub
):
    from vision_bench.run.shards import plan_shards

    plan = plan_shards([ub.MODELS_BY_CLI_NAME[m] for m in MODELS], 3)
    victim = next(i for i, members in enumerate(plan) if members[0].CLI_NAME == "depth-anything-v2-small")
    out = tmp_path / "cluster"
    array, merge = submit(cluster, out, tool_options(sample_image, runs=2))  # tasks side by side
    log = out / "logs" / f"bench_{array}_{victim}.log"
    deadline = time.monotonic() + 600
    while not (log.exists() and "[LOAD] Loading DepthAnythingV2Small" in log.read_text(errors="replace")):
        assert time.monotonic() < deadline, logs_of(out)
        task = cluster.job(f"{array}_{victim}")
        assert not task or task[0].get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), (task, logs_of(out))
        time.sleep(0.3)
    cluster.run("scancel", f"{array}_{victim}")
    tasks, merged_job = wait(cluster, array, merge)
    states = {int(t["ArrayTaskId"]): t["JobState"] for t in tasks}
    assert states == {i: "CANCELLED" if i == victim else "COMPLETED" for i in range(3)}, logs_of(out)
    assert merged_job["JobState"] == "FAILED" and merged_job["ExitCode"] == "1:0", logs_of(out)

    merged = load_run(out / "merged" / array)
    data = merged["json"]
    assert data["status"] == "incomplete"
    by_name = {m["cli_name"]: m for m in data["models"]}
    assert list(by_name) == MODELS
    killed = by_name["depth-anything-v2-small"]
    assert killed["status"] == "failed" and killed["shard_log"] == str(log) and log.exists()
    assert f"shard {victim}/3" in killed["error"]["message"] and str(log) in killed["error"]["message"]
    assert killed["status_in_shard"] in ("interrupted", "missing")  # SIGTERM mid-model, or before the tool's handler
    print(
        f"\n[slurm cancelled task] {killed['model']}: in its shard {killed['status_in_shard']}; "
        f"{killed['error']['message']}"
    )
    assert all(by_name[m]["status"] == "complete" for m in MODELS if m != "depth-anything-v2-small")
    md = merged["md_path"].read_text()
    failed_row = next(line for line in md.splitlines() if line.startswith("| DepthAnythingV2Small | failed |"))
    assert str(log) in failed_row
    merge_log = (out / "logs" / f"merge_{merge}.log").read_text()
    assert f"[ERROR] --merge: DepthAnythingV2Small: shard {victim}/3" in merge_log
