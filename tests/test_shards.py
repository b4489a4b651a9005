"""--shard I/N and --merge of an array's shards, without a cluster: the plan balanced by
RELATIVE_COST, the usage errors, and the coverage check on merge (a failed shard and a shard that
wrote nothing both leave their models failed with the task's log named, exit code 1)."""

import json
import subprocess

import pytest
from conftest import ROOT, load_run, run_cli
from test_worker_processes import run_tool

from vision_bench.run.shards import plan_shards


def names(plan) -> list[list[str]]:
    return [[cls.CLI_NAME for cls in shard] for shard in plan]


def test_the_plan_balances_by_relative_cost_and_puts_every_model_in_one_shard(ub):
    classes = ub.MODEL_CLASSES
    for count in range(1, len(classes) + 1):
        plan = plan_shards(classes, count)
        assert len(plan) == count and all(plan), count
        flat = [cls for shard in plan for cls in shard]
        assert sorted(c.CLI_NAME for c in flat) == sorted(c.CLI_NAME for c in classes)  # each model once
        for shard in plan:  # within a shard, the --models order
            assert shard == sorted(shard, key=classes.index)
        assert plan_shards(classes, count) == plan  # every task of an array computes the same plan
        if count >= 2:  # the costliest model never shares a task with the next costliest
            heavy = max(classes, key=lambda c: c.RELATIVE_COST)
            assert next(s for s in plan if heavy in s) == [heavy]
    assert names(plan_shards(classes, 3))[:2] == [["depthpro"], ["depth-anything-v2-large"]]
    # The costs decide, not the order: the same models in reverse order give the same shards.
    assert sorted(map(sorted, names(plan_shards(classes[::-1], 3)))) == sorted(
        map(sorted, names(plan_shards(classes, 3)))
    )


@pytest.mark.parametrize(
    "shard, expected",
    [
        ("3/3", "--shard 3/3: the index must be 0 to 2"),
        ("1/0", "--shard 1/0: N must be 1 or more"),
        ("one/3", "--shard 'one/3': expected I/N"),
        ("0/4", "--shard: 4 shards for 3 model(s) leaves a shard with nothing to run; use at most 3 shards"),
    ],
)
def test_a_bad_shard_exits_2_with_one_line(tmp_path, shard, expected):
    proc = run_cli(
        "--shard",
        shard,
        "--models",
        "yolo11n-detect,yolo11n-pose,depthpro",
        "--weights",
        "random",
        "--output-dir",
        tmp_path / "out",
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def shard_runs(tmp_path_factory, sample_image):
    """tinyconv,selfkill as two shards: shard 0 (TinyConv) completes, shard 1's model kills its worker."""
    root = tmp_path_factory.mktemp("shards")
    files, codes = [], []
    for index in (0, 1):
        proc = run_tool(
            "--models",
            "tinyconv,selfkill",
            "--shard",
            f"{index}/2",
            "--weights",
            "random",
            "--runs",
            2,
            "--no-dissect",
            "--images",
            sample_image,
            "--output-dir",
            root / str(index),
        )
        (root / f"task_{index}.log").write_text(proc.stdout + proc.stderr)
        codes.append(proc.returncode)
        run = load_run(root / str(index))
        files.append(run["results_dir"] / f"benchmark_results_{run['run_id']}.json")
    assert codes == [0, 1], (root / "task_1.log").read_text()[-3000:]
    return root, files


def test_each_shard_runs_its_share_and_records_the_whole_plan(shard_runs):
    _, files = shard_runs
    for index, path in enumerate(files):
        shard = json.loads(path.read_text())["config"]["shard"]
        assert (shard["index"], shard["count"], shard["slurm"]) == (index, 2, None)
        assert shard["models"] == [["tinyconv"], ["selfkill"]][index]
        assert [(s["cli_name"], s["model"], s["shard"]) for s in shard["selected"]] == [
            ("tinyconv", "TinyConv", 0),
            ("selfkill", "SelfKill", 1),
        ]
        assert json.loads(path.read_text())["config"]["models"] == shard["models"]


def test_a_failed_shard_is_named_with_its_log_and_the_merge_exits_1(shard_runs, tmp_path):
    root, files = shard_runs
    template = str(root / "task_{shard}.log")
    proc = run_cli("--merge", *files, "--shard-logs", template, "--output-dir", tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    merged = load_run(tmp_path)
    tiny, dead = merged["json"]["models"]
    assert (tiny["status"], dead["status"], dead["status_in_shard"]) == ("complete", "failed", "failed")
    assert dead["shard_log"] == str(root / "task_1.log")
    assert dead["error"]["message"].startswith(
        "shard 1/2 ended with it failed (WorkerDied: the worker process was killed by SIGKILL"
    )
    assert f"see the task's log {root / 'task_1.log'}" in dead["error"]["message"]
    assert "[ERROR] --merge: SelfKill: shard 1/2 ended with it failed" in proc.stdout
    assert merged["json"]["status"] == "incomplete" and merged["json"]["shards"]["missing"] == []


def test_a_shard_that_wrote_nothing_is_missing_and_its_models_failed(shard_runs, tmp_path):
    root, files = shard_runs
    proc = run_cli("--merge", files[0], "--shard-logs", str(root / "task_{shard}.log"), "--output-dir", tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    merged = load_run(tmp_path)
    data = merged["json"]
    assert data["shards"] == {
        "count": 2,
        "present": [0],
        "missing": [1],
        "logs_template": str(root / "task_{shard}.log"),
    }
    assert [(m["model"], m["status"]) for m in data["models"]] == [("TinyConv", "complete"), ("SelfKill", "failed")]
    missing = data["models"][1]
    assert missing["status_in_shard"] == "missing" and missing["runs"] == [] and missing["weights"] == "random"
    assert "shard 1/2 wrote no results for it" in missing["error"]["message"]
    md = merged["md_path"].read_text()
    assert "Shards of one job array (--shard I/2): 1 of 2 wrote results; no results from shard 1" in md
    row = next(line for line in md.splitlines() if line.startswith("| SelfKill | failed |"))
    assert str(root / "task_1.log") in row
    assert "| SelfKill | cpu" not in md  # it ran nowhere: not in the table of where each model ran
    assert merged["csv_path"].read_text().count("SelfKill,selfkill,failed") == 1


def test_shards_of_different_arrays_or_with_plain_results_are_refused(shard_runs, tmp_path):
    _, files = shard_runs
    other = json.loads(files[1].read_text())
    other["config"]["shard"]["count"] = 3
    (tmp_path / "other.json").write_text(json.dumps(other))
    proc = run_cli("--merge", files[0], tmp_path / "other.json", "--output-dir", tmp_path / "a")
    assert proc.returncode == 2 and "are shards of different arrays" in proc.stderr
    plain = json.loads(files[1].read_text())
    plain["config"].pop("shard")
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    proc = run_cli("--merge", files[0], tmp_path / "plain.json", "--output-dir", tmp_path / "b")
    assert proc.returncode == 2 and "plain.json is not a shard (--shard) but other files are" in proc.stderr
    proc = run_cli("--merge", tmp_path / "plain.json", "--shard-logs", "x_{shard}.log", "--output-dir", tmp_path / "c")
    assert proc.returncode == 2 and "--merge needs two or more result files" in proc.stderr
    assert not any((tmp_path / d).exists() for d in "abc")


def test_submit_sh_tells_a_cluster_user_what_to_type_and_refuses_what_it_sets_itself():
    submit = ROOT / "slurm" / "submit.sh"
    proc = subprocess.run(["bash", str(submit), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: slurm/submit.sh [--shards N]")
    for what in (
        "--dependency=afterany",
        "--gres=gpu:1",
        "sinfo -h -o %G",
        "--threads N",
        "DIR/shards/<array job id>/<task>/",
        "DIR/merged/<array job id>/results/",
        "merge job exits non-zero",
    ):
        assert what in proc.stdout, what
    for option in (["--threads", "4"], ["--shard", "0/2"], ["--merge", "a.json"]):  # before any sbatch is called
        proc = subprocess.run(["bash", str(submit), *option], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2 and f"submit.sh sets {option[0]} itself" in proc.stderr
    proc = subprocess.run(
        ["bash", str(submit), "--shards", "4", "--models", "yolo11n-detect,yolo11n-pose"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "--shards 4 for 2 model(s)" in proc.stderr
