"""--compare, --merge and --devices: significance verdicts on synthetic result files, real runs
compared and merged, two workers on the CPU, and the one-line errors for files that are not results."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_run, run_cli

from vision_bench.measure.stats import mann_whitney_p

SMALL_RUN = ["--weights", "random", "--no-dissect"]


def synthetic_model(name: str, times_s, parameters=2_616_248, peak=600 << 20, status="complete", weights="random"):
    return {
        "model": name,
        "cli_name": name.lower(),
        "status": status,
        "weights": weights,
        "dtype": "float32",
        "parameters": parameters,
        "flops": 2 * parameters,
        "gflops": 2 * parameters / 1e9,
        "input_shape": [1, 3, 640, 480],
        "memory": {"peak_bytes": peak},
        "runs": [{"image": "a.jpg", "kind": "cold", "cold": True, "total_s": 1.0}]
        + [{"image": "a.jpg", "kind": "timed", "cold": False, "total_s": float(t)} for t in times_s],
    }


def mergeable_model(name: str, times_s) -> dict:
    """A synthetic complete model with every figure a merged report shows."""
    from vision_bench.measure.stats import latency_stats
    from vision_bench.records.codec import to_json

    stats = to_json(latency_stats(list(times_s)))
    model = synthetic_model(name, times_s)
    return model | {
        "weights_source": "random",
        "nominal_input_size": 640,
        "load_seconds": 0.5,
        "cold_start": model["runs"][0],
        "latency_end_to_end": stats,
        "latency_forward": stats,
        "memory": {"peak_bytes": 600 << 20, "peak_over_baseline_bytes": 100 << 20},
    }


def synthetic_file(
    path: Path, models: list[dict], run_id="20260101_000000", schema="unified-benchmark/2", gpu=None
) -> Path:
    data = {
        "schema": schema,
        "run_id": run_id,
        "status": "complete",
        "images": ["/x/a.jpg"],
        "config": {
            "runs_per_image": 10,
            "warmup_rounds": 1,
            "weights": "random",
            "device": "cpu",
            "isolation": "process",
            "seed": 42,
        },
        "system": {"gpu": gpu, "cpu": "x86_64", "torch": "2.14.1", "transformers": "5.0", "ultralytics": "8.4"},
        "models": models,
    }
    path.write_text(json.dumps(data))
    return path


def tight(median_s: float, n=10, seed=0):
    """n run times within +-1% of a median: a spread far smaller than a 30% change."""
    rng = np.random.default_rng(seed)
    return median_s * (1 + rng.uniform(-0.01, 0.01, n))


def comparison_md(out: Path) -> str:
    found = sorted((out / "results").glob("comparison_*.md"))
    assert len(found) == 1, found
    return found[0].read_text()


def test_thirty_percent_slower_with_tight_spreads_is_slower_and_fails_the_gate(tmp_path):
    base = synthetic_file(tmp_path / "base.json", [synthetic_model("Net", tight(0.100, seed=1))])
    new = synthetic_file(
        tmp_path / "new.json", [synthetic_model("Net", tight(0.130, seed=2))], run_id="20260101_000001"
    )
    gated = run_cli("--compare", base, new, "--fail-if-slower", "10", "--output-dir", tmp_path / "a")
    assert gated.returncode == 1, gated.stdout + gated.stderr
    row = next(line for line in gated.stdout.splitlines() if line.strip().startswith("Net "))
    assert row.rstrip().endswith("slower") and float(row.split()[3].rstrip("%")) == pytest.approx(30, abs=2)
    assert "--fail-if-slower 10" in gated.stdout + gated.stderr
    md = comparison_md(tmp_path / "a")
    assert "**slower** (fails the gate)" in md and "Mann-Whitney" in md
    # The same change under a looser gate passes: the exit code follows the threshold, not the verdict alone.
    loose = run_cli("--compare", base, new, "--fail-if-slower", "50", "--output-dir", tmp_path / "b")
    assert loose.returncode == 0, loose.stdout + loose.stderr
    # And the other way round it is faster.
    back = run_cli("--compare", new, base, "--output-dir", tmp_path / "c")
    assert back.returncode == 0 and "faster" in back.stdout


def test_identical_distributions_are_no_significant_change_and_one_sided_models_are_listed(tmp_path):
    # Two draws from one distribution: their medians differ a little, and the test must not call that a change.
    base_times, new_times = tight(0.100, seed=3), tight(0.100, seed=4)
    assert np.median(base_times) != np.median(new_times)
    base = synthetic_file(
        tmp_path / "base.json", [synthetic_model("Net", base_times), synthetic_model("OnlyBase", base_times)]
    )
    new = synthetic_file(
        tmp_path / "new.json", [synthetic_model("Net", new_times), synthetic_model("OnlyNew", new_times)]
    )
    proc = run_cli("--compare", base, new, "--fail-if-slower", "10", "--allow-missing", "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # OnlyBase is missing in new: allowed here
    assert "no significant change" in proc.stdout
    assert "only in base: OnlyBase" in proc.stdout and "only in new: OnlyNew" in proc.stdout
    md = comparison_md(tmp_path)
    assert "- Base only: OnlyBase" in md and "- New only: OnlyNew" in md
    assert "**no significant change**" in md


def test_a_different_model_a_status_change_and_random_against_pretrained_are_flagged(tmp_path):
    base = synthetic_file(
        tmp_path / "base.json",
        [synthetic_model("Net", tight(0.1)), synthetic_model("Other", tight(0.1), weights="pretrained")],
    )
    new = synthetic_file(
        tmp_path / "new.json",
        [
            synthetic_model("Net", tight(0.1), parameters=3_000_000, status="failed"),
            synthetic_model("Other", tight(0.1)),
        ],
        gpu="NVIDIA A100",
    )
    proc = run_cli("--compare", base, new, "--output-dir", tmp_path)
    assert proc.returncode == 1, proc.stderr  # Net completed in base and failed in new
    md = comparison_md(tmp_path)
    assert "**Different model:** Net's parameters, FLOPs changed" in md
    assert "Status change: Net complete -> failed" in md
    assert "| GPU | none | NVIDIA A100 |" in md
    assert "> **Warning:** Other: pretrained weights in base, random in new" in md
    assert "ran on a different system" not in md  # the GPU change is a file-wide one, listed once at the top


def test_a_model_that_moved_to_another_system_inside_a_merged_file_is_a_warning(tmp_path):
    base = synthetic_file(
        tmp_path / "base.json", [synthetic_model("Net", tight(0.1)), synthetic_model("Other", tight(0.1))]
    )
    moved = synthetic_model("Net", tight(0.1)) | {"system": {"gpu": "NVIDIA L4", "torch": "2.14.1"}, "device": "cuda:1"}
    new = synthetic_file(tmp_path / "new.json", [moved, synthetic_model("Other", tight(0.1))])
    proc = run_cli("--compare", base, new, "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = comparison_md(tmp_path)
    assert "> **Warning:** Net ran on a different system or device: gpu None -> NVIDIA L4" in md
    assert "Other ran on a different system" not in md and "Nothing: same system" in md


def test_mann_whitney_p_matches_scipy(ub):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    cases = [
        (rng.normal(1, 0.1, 5), rng.normal(1.2, 0.1, 5), "exact"),
        (np.round(rng.normal(1, 0.1, 6), 1), np.round(rng.normal(1.1, 0.1, 7), 1), "exact"),  # ties
        (rng.normal(1, 0.1, 20), rng.normal(1.05, 0.1, 25), "asymptotic"),
        (rng.normal(1, 0.1, 5), rng.normal(1.1, 0.1, 100), "asymptotic"),  # too many splits to enumerate
        (np.round(rng.normal(1, 0.1, 30), 2), np.round(rng.normal(1, 0.1, 30), 2), "asymptotic"),
    ]
    for a, b, method in cases:
        # scipy's own exact test ignores ties; its permutation method over every split does not.
        expected = stats.mannwhitneyu(
            a,
            b,
            alternative="two-sided",
            method=method if method == "asymptotic" else stats.PermutationMethod(n_resamples=np.inf),
        ).pvalue
        assert mann_whitney_p(list(a), list(b)) == pytest.approx(expected, rel=1e-6, abs=1e-9), (a, b)
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file"),
        ("this is not json", "not JSON"),
        (json.dumps({"hello": 1}), "not a benchmark results file"),
        (json.dumps({"schema": "unified-benchmark/99", "models": []}), "schema 'unified-benchmark/99'"),
    ],
)
@pytest.mark.parametrize("option", ["--compare", "--merge"])
def test_a_file_that_is_not_a_readable_result_exits_2_with_one_line(tmp_path, content, expected, option):
    good = synthetic_file(tmp_path / "good.json", [mergeable_model("Net", tight(0.1))])
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    proc = run_cli(option, good, bad, "--output-dir", tmp_path / "out")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "out").exists(), "nothing is written for a bad input"


def test_the_previous_schema_is_read(tmp_path):
    """Schema 1 had no warm-up and no 'kind': its warm runs are the runs after the cold start."""
    old_model = synthetic_model("Net", tight(0.1))
    for run in old_model["runs"]:
        del run["kind"]
    old = synthetic_file(tmp_path / "old.json", [old_model], schema="unified-benchmark/1")
    new = synthetic_file(tmp_path / "new.json", [synthetic_model("Net", tight(0.2, seed=5))])
    proc = run_cli("--compare", old, new, "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "10 / 10" in comparison_md(tmp_path)  # the cold start is not among the compared runs
    assert "slower" in proc.stdout


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, sample_image):
    """Two random-weights yolo11n-detect runs (--runs 5) and one yolo11n-pose run."""
    root = tmp_path_factory.mktemp("real")
    runs = {}
    for name, model, n in (("a", "yolo11n-detect", "5"), ("b", "yolo11n-detect", "5"), ("c", "yolo11n-pose", "1")):
        proc = run_cli(  # the verdicts are under test, not the machine: a loaded one would have none
            "--models",
            model,
            "--runs",
            n,
            "--images",
            sample_image,
            *SMALL_RUN,
            "--busy-limit",
            "99",
            "--output-dir",
            root / name,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        run = load_run(root / name)
        runs[name] = run["results_dir"] / f"benchmark_results_{run['run_id']}.json"
    return root, runs


def test_two_real_runs_compared(real_runs):
    root, runs = real_runs
    proc = run_cli("--compare", runs["a"], runs["b"], "--output-dir", root / "cmp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = comparison_md(root / "cmp")
    assert "Nothing: same system" in md
    row = next(line for line in md.splitlines() if line.startswith("| YOLO11nDetect |") and "5 / 5" in line)
    assert any(f"**{v}**" in row for v in ("faster", "slower", "no significant change")), row


def test_merging_two_shards_gives_one_report_with_all_models(real_runs):
    root, runs = real_runs
    proc = run_cli("--merge", runs["a"], runs["c"], "--output-dir", root / "merged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    merged = load_run(root / "merged")
    data = merged["json"]
    assert data["schema"] == "unified-benchmark/3"
    assert [m["model"] for m in data["models"]] == ["YOLO11nDetect", "YOLO11nPose"]
    originals = [json.loads(runs[k].read_text())["models"][0] for k in ("a", "c")]
    for mine, original in zip(data["models"], originals):
        assert mine["runs"] == original["runs"] and mine["latency_end_to_end"] == original["latency_end_to_end"]
    assert [m["source_run_id"] for m in data["models"]] == [json.loads(runs[k].read_text())["run_id"] for k in "ac"]
    assert len(merged["csv_path"].read_text().strip().splitlines()) == 3
    md = merged["md_path"].read_text()
    assert "| YOLO11nDetect | random" in md and "| YOLO11nPose | random" in md and "Merged from 2 result files" in md
    assert "Mixed systems" not in md  # same machine; but the shards ran 5 and 1 timed runs per image:
    assert (
        "The parts ran with different runs_per_image: YOLO11nDetect runs_per_image=5; YOLO11nPose runs_per_image=1"
        in md
    )
    walls = [json.loads(runs[k].read_text())["total_seconds"] for k in "ac"]
    assert data["total_seconds"] == pytest.approx(sum(walls))
    assert [s["wall"] for s in data["phase_totals"]["shards"]] == walls
    assert "the sum of the 2 merged files' wall times" in md
    # The tool reads its own merged file back.
    merged_file = merged["results_dir"] / f"benchmark_results_{merged['run_id']}.json"
    back = run_cli("--compare", runs["a"], merged_file, "--output-dir", root / "merged_back")
    assert back.returncode == 0, back.stdout + back.stderr
    for m in data["models"]:  # the output pictures the report links to came along
        assert (merged["results_dir"] / m["output_image"]).exists()


def test_merging_files_that_hold_the_same_model_fails_unless_prefer_last(real_runs):
    root, runs = real_runs
    proc = run_cli("--merge", runs["a"], runs["b"], "--output-dir", root / "dup")
    assert proc.returncode == 2
    assert f"YOLO11nDetect is in both {runs['a']} and {runs['b']}" in proc.stderr and "--prefer last" in proc.stderr
    assert not (root / "dup").exists()
    proc = run_cli("--merge", runs["a"], runs["b"], "--prefer", "last", "--output-dir", root / "last")
    assert proc.returncode == 0, proc.stderr
    data = load_run(root / "last")["json"]
    assert [m["source_run_id"] for m in data["models"]] == [json.loads(runs["b"].read_text())["run_id"]]


def test_a_merge_of_different_systems_says_so(real_runs, tmp_path):
    root, runs = real_runs
    other = json.loads(runs["c"].read_text())
    other["system"] = copy.deepcopy(other["system"]) | {"gpu": "NVIDIA H100", "torch": "2.99.0"}
    other["config"]["runs_per_image"] = 10
    other_path = runs["c"].parent / "other_system.json"
    other_path.write_text(json.dumps(other))
    proc = run_cli("--merge", runs["a"], other_path, "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = load_run(tmp_path)
    assert [m["system"]["gpu"] for m in merged["json"]["models"]] == [None, "NVIDIA H100"]
    md = merged["md_path"].read_text()
    assert "**Mixed systems.**" in md and "| YOLO11nPose | cpu | NVIDIA H100 | torch 2.99.0 |" in md
    assert (
        "**Mixed settings.** The parts ran with different runs_per_image: YOLO11nDetect runs_per_image=5; "
        "YOLO11nPose runs_per_image=10." in md
    )
    assert [m["run_config"]["runs_per_image"] for m in merged["json"]["models"]] == [5, 10]


def test_two_workers_on_the_cpu_split_the_models_and_write_one_report(tmp_path, sample_image):
    proc = run_cli(
        "--devices",
        "cpu,cpu",
        "--models",
        "yolo11n-detect,yolo11n-pose",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--images",
        sample_image,
        *SMALL_RUN,
        "--output-dir",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = load_run(tmp_path)
    models = run["json"]["models"]
    assert [m["model"] for m in models] == ["YOLO11nDetect", "YOLO11nPose"]  # the --models order
    assert all(m["status"] == "complete" and m["device"] == "cpu" for m in models)
    assert sorted(m["device_slot"] for m in models) == [0, 1]
    assert run["json"]["config"]["devices"] == ["cpu", "cpu"]
    for m in models:  # each worker's lines are relayed with its device slot and model
        assert f"[cpu#{m['device_slot']} {m['cli_name']}] [LOAD]" in proc.stdout
    md = run["md_path"].read_text()
    assert "| YOLO11nDetect | cpu (worker " in md and "| YOLO11nPose | cpu (worker " in md
    # The two slots measured in parallel: the overhead is against their busy time, not the wall, and not clamped.
    totals = run["json"]["phase_totals"]
    slots = totals["slots"]
    assert sorted(s["slot"] for s in slots) == [0, 1] and all(s["busy"] > s["measuring"] > 0 for s in slots)
    assert totals["available"] == pytest.approx(totals["outside_slots"] + sum(s["busy"] for s in slots))
    assert totals["available"] > totals["wall"] and totals["overhead"] == pytest.approx(
        totals["available"] - totals["measuring"]
    )
    assert totals["overhead"] == pytest.approx(sum(s["overhead"] for s in slots) + totals["outside_slots"])
    assert "device slots in parallel" in md


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--devices", "cuda:0,cuda:1"], "CUDA is not available"),
        (["--devices", "cpu,cpu", "--isolation", "none"], "needs --isolation process"),
        (["--devices", "cpu", "--device", "cpu"], "one or the other"),
    ],
)
def test_devices_usage_errors(tmp_path, extra, expected):
    import torch

    if "cuda:0,cuda:1" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli(*extra, "--models", "yolo11n-detect", *SMALL_RUN, "--output-dir", tmp_path / "out")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_interrupt_with_devices_stops_every_worker_and_keeps_the_finished_model(tmp_path, sample_image):
    """Slot 0 hangs in Sleepy while slot 1 finishes TinyConv; Ctrl-C then stops the hung worker,
    and the report (written once every device thread is done) holds both final records."""
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from conftest import ROOT

    log = tmp_path / "stdout.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "worker_models.py"),
                "--devices",
                "cpu,cpu",
                "--models",
                "sleepy,tinyconv",
                "--weights",
                "random",
                "--runs",
                "2",
                "--no-dissect",
                "--images",
                str(sample_image),
                "--output-dir",
                str(tmp_path / "out"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240
        while not ("SLEEPING" in log.read_text() and "[COMPLETE] TinyConv" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 130, text[-2000:]
    run = load_run(tmp_path / "out")
    sleepy, tiny = run["json"]["models"]
    assert (sleepy["model"], sleepy["status"], tiny["model"], tiny["status"]) == (
        "Sleepy",
        "interrupted",
        "TinyConv",
        "complete",
    )
    assert {sleepy["device_slot"], tiny["device_slot"]} == {0, 1}
    assert "Sleepy                 interrupted" in text  # the closing summary agrees with the JSON
    assert sleepy["worker"]["pid"] in {p.pid for p in children}
    deadline = time.monotonic() + 10
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(p.pid, p.cmdline()[:3]) for p in alive]


def test_the_comparison_page_has_the_markdown_verdicts_and_escapes_names(tmp_path):
    from html.parser import HTMLParser

    hostile = "Net<script>alert(1)</script>"
    base = synthetic_file(tmp_path / "base.json", [synthetic_model(hostile, tight(0.100, seed=1))])
    new = synthetic_file(
        tmp_path / "new.json", [synthetic_model(hostile, tight(0.130, seed=2))], run_id="20260101_000001</b><img src=x>"
    )
    proc = run_cli("--compare", base, new, "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pages = sorted((tmp_path / "results").glob("comparison_*.html"))
    assert len(pages) == 1 and pages[0].with_suffix(".md").exists()
    page = pages[0].read_text()

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.cells, self.in_td = [], [], False

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "td":
                self.in_td, self.cells = True, self.cells + [""]

        def handle_endtag(self, tag):
            self.in_td = self.in_td and tag != "td"

        def handle_data(self, data):
            if self.in_td:
                self.cells[-1] += data

    parsed = Collect()
    parsed.feed(page)
    # The names arrive as text: the only script element is the page's own two, no img at all.
    assert parsed.tags.count("script") == 2 and "img" not in parsed.tags
    assert hostile in parsed.cells and "slower" in parsed.cells
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<b>slower</b>" in page


@pytest.mark.parametrize("field, value", [("error", {"message": "boom"}), ("worker", {"exit_code": 0})])
def test_a_schema_valid_file_the_records_cannot_hold_is_a_usage_error(tmp_path, field, value):
    """The schema lets these through (an error without its type, a worker without its pid); reading
    them into records fails, and that must read as a bad input, not as a traceback."""
    from vision_bench.common import UsageError
    from vision_bench.reports.results_file import read_results

    model = {**mergeable_model("Net", tight(0.1)), field: value}
    path = synthetic_file(tmp_path / "odd.json", [model])
    with pytest.raises(UsageError, match=rf"--compare: .*odd.json: not a valid results file: .*{field}"):
        read_results(path, "--compare")


def test_a_merge_carries_the_label_and_the_commits_the_parts_ran_from(tmp_path, capsys):
    from vision_bench.records.codec import to_json
    from vision_bench.reports.merge import merged_document
    from vision_bench.reports.results_file import read_results

    commit = {"role": "working folder", "folder": "/repo", "commit": "a" * 40, "subject": "s", "dirty": True}
    paths = []
    for name, label, run_id in (("Net", "driver 560", "20260101_000000"), ("Other", "branch x", "20260101_000001")):
        path = synthetic_file(tmp_path / f"{name}.json", [synthetic_model(name, tight(0.1))], run_id=run_id)
        path.write_text(json.dumps(json.loads(path.read_text()) | {"label": label, "source": [commit]}))
        paths.append(path)

    def merged() -> dict:
        files = [read_results(path, "--compare") for path in paths]  # the synthetic models lack what --merge draws
        models = [m for f in files for m in f.models]
        data = to_json(merged_document(files, paths, models, "20260101_000002", True))
        data["source"] = [{k: v for k, v in s.items() if v is not None} for s in data.get("source") or []]
        return data

    same = merged()
    assert same["label"] == "driver 560 + branch x" and same["source"] == [commit]
    assert "different commits" not in capsys.readouterr().out
    other = json.loads(paths[1].read_text()) | {"source": [commit | {"commit": "b" * 40, "dirty": False}]}
    paths[1].write_text(json.dumps(other))
    assert merged()["source"] == [commit]
    assert "the parts ran from different commits or tree states (aaaaaaa dirty, bbbbbbb)" in "".join(
        capsys.readouterr()
    )


def test_merging_files_without_fps_names_the_fastest_model_without_it(tmp_path):
    """fps is optional in the schema: a merge of two valid files that lack it reports the fastest model
    (no crash on the missing figure) and names no FPS."""
    first = synthetic_file(tmp_path / "a.json", [mergeable_model("Quick", tight(0.05))])
    second = synthetic_file(tmp_path / "b.json", [mergeable_model("Slow", tight(0.2))], run_id="20260101_000001")
    proc = run_cli("--merge", first, second, "--output-dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = next((tmp_path / "out" / "results").glob("benchmark_report_*.md")).read_text()
    fastest = next(line for line in report.splitlines() if "Fastest: Quick" in line)
    assert "FPS" not in fastest and "Slowest: Slow" in fastest
