"""End to end through the command line: five models, random weights, two small images, a cold
start, one warm-up round and three timed runs per image; once with a worker process per model
(the default) and once all in one process (--isolation none). Each run (module-scoped) is
checked from several sides: the three reports agree, every run's time is kept and marked, the
cold start and warm-up stand apart from the statistics, every headline median has its interval,
the phases are timed, the layer folders are complete, and every link in the Markdown report
resolves to a valid picture."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_run, run_cli
from PIL import Image

MODELS = ["yolo11n-detect", "yolo11n-segment", "yolo11n-pose", "depth-anything-v2-small", "mobilesam"]
RUNS = 3  # timed runs per image: 2 images x 3 = 6, the fewest with a 95% interval of the median
WARMUP = 1


def strict_json_loads(text):
    def reject(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture(scope="module")
def second_image(tmp_path_factory):
    """A second input shape (landscape), so that warm-up and per-image statistics mean something."""
    from ultralytics.utils import ASSETS

    out = tmp_path_factory.mktemp("images2") / "zidane_small.jpg"
    with Image.open(Path(ASSETS) / "zidane.jpg") as im:
        im.convert("RGB").resize((320, 180)).save(out, quality=90)
    return out


@pytest.fixture(scope="module", params=["process", "none"])
def run(request, tmp_path_factory, sample_image, second_image):
    out = tmp_path_factory.mktemp(f"e2e_{request.param}")
    proc = run_cli(
        "--weights",
        "random",
        "--models",
        ",".join(MODELS),
        "--runs",
        RUNS,
        "--warmup",
        WARMUP,
        "--images",
        sample_image,
        second_image,
        "--sam-prompt",
        "box",
        "--isolation",
        request.param,
        "--output-dir",
        out,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = load_run(out)
    data["stdout"] = proc.stdout
    data["out"] = out
    data["isolation"] = request.param
    data["images"] = [sample_image.name, second_image.name]
    return data


def by_cli(run):
    return {m["cli_name"]: m for m in run["json"]["models"]}


def test_json_is_strict_and_complete(run):
    text = (run["results_dir"] / f"benchmark_results_{run['run_id']}.json").read_text()
    data = strict_json_loads(text)
    assert data["status"] == "complete"
    assert [m["cli_name"] for m in data["models"]] == MODELS
    for key in ("os", "python", "torch", "transformers", "ultralytics", "cuda_available", "torch_threads"):
        assert key in data["system"]
    assert data["config"]["seed"] == 42 and data["config"]["weights"] == "random"
    assert data["config"]["isolation"] == run["isolation"] and data["config"]["warmup_rounds"] == WARMUP
    assert data["schema"] == "unified-benchmark/3"
    assert "--weights random" in data["command"]
    for m in data["models"]:
        assert m["status"] == "complete"
        assert m["weights_source"].startswith("random")


def test_every_run_is_kept_and_marked_and_only_timed_runs_make_the_statistics(run):
    first, second = run["images"]
    expected = (
        [("cold", first)]
        + [("warmup", first), ("warmup", second)] * WARMUP
        + [("timed", first)] * RUNS
        + [("timed", second)] * RUNS
    )
    for m in run["json"]["models"]:
        runs = m["runs"]
        assert [(r["kind"], r["image"]) for r in runs] == expected
        assert [r["cold"] for r in runs] == [True] + [False] * (len(runs) - 1)
        assert all(r["total_s"] > 0 and r["forward_s"] > 0 for r in runs)
        assert m["cold_start"] == runs[0]
        timed = [r for r in runs if r["kind"] == "timed"]
        e2e = m["latency_end_to_end"]
        assert e2e["n"] == len(timed) == 2 * RUNS
        assert e2e["median"] == pytest.approx(float(np.median([r["total_s"] for r in timed])))
        assert e2e["max"] == pytest.approx(max(r["total_s"] for r in timed))
        assert m["latency_forward"]["median"] == pytest.approx(float(np.median([r["forward_s"] for r in timed])))
        assert m["fps"] == pytest.approx(1 / e2e["median"])
        # every headline median has its interval, and the interval holds it
        for stats in (e2e, m["latency_forward"]):
            assert stats["ci95_low"] <= stats["median"] <= stats["ci95_high"]
        per_image = m["latency_per_image"]
        assert per_image[second]["warmup_s"] == [
            r["total_s"] for r in runs if r["kind"] == "warmup" and r["image"] == second
        ]
        assert per_image[first]["steady"]["n"] == RUNS and per_image[first]["first_is_cold_start"]


def test_phases_are_timed_and_the_overhead_is_what_is_left(run):
    data = run["json"]
    phases = {"load", "cold_start", "warmup", "timed", "flops", "output", "time_breakdown", "dissection", "cleanup"}
    if run["isolation"] == "process":
        phases.add("worker_start")
    for m in data["models"]:
        assert phases <= set(m["phase_seconds"]), m["model"]
        assert all(v >= 0 for v in m["phase_seconds"].values())
        assert m["phase_seconds"]["timed"] >= sum(r["total_s"] for r in m["runs"] if r["kind"] == "timed")
    totals = data["phase_totals"]
    measuring = sum(
        totals[p] for p in ("load", "cold_start", "warmup", "timed", "flops", "time_breakdown", "dissection")
    )
    assert totals["measuring"] == pytest.approx(measuring)
    assert totals["overhead"] == pytest.approx(data["total_seconds"] - measuring, abs=0.01)
    md = run["md_path"].read_text()
    assert "## Where the run's time went" in md
    # The final write drew the summary charts (before it stamped the wall time) and links them.
    assets = run["results_dir"] / f"report_{run['run_id']}"
    assert (assets / "latency.png").exists() and f"]({assets.name}/latency.png)" in md
    # The wall time starts with the process, before main() ran: it is at least the sum of the phases measured.
    assert data["total_seconds"] >= totals["measuring"]


def test_worker_records(run):
    for m in run["json"]["models"]:
        if run["isolation"] == "none":
            assert "worker" not in m
            continue
        worker = m["worker"]
        assert worker["exit_code"] == 0 and worker["signal"] is None, worker
        log = run["results_dir"] / worker["log"]
        assert "[LOAD]" in log.read_text()
    pids = {m.get("worker", {}).get("pid") for m in run["json"]["models"]}
    assert len(pids) == (len(MODELS) if run["isolation"] == "process" else 1)


def test_csv_and_markdown_agree_with_json(run):
    models = by_cli(run)
    with open(run["csv_path"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["cli_name"] for r in rows] == MODELS
    md = run["md_path"].read_text()
    for row in rows:
        m = models[row["cli_name"]]
        assert float(row["e2e_median_s"]) == pytest.approx(m["latency_end_to_end"]["median"])
        assert float(row["cold_start_s"]) == pytest.approx(m["cold_start"]["total_s"])
        assert int(row["parameters"]) == m["parameters"]
        assert float(row["gflops"]) == pytest.approx(m["gflops"])
        assert int(row["layers_dissected"]) == m["dissection"]["records"]
        # The Markdown summary row shows the same figures, in milliseconds.
        line = next(line for line in md.splitlines() if line.startswith(f"| {m['model']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] == f"{m['cold_start']['total_s'] * 1000:.1f}"
        e2e = m["latency_end_to_end"]
        assert cells[4] == (f"{e2e['median'] * 1000:.1f} [{e2e['ci95_low'] * 1000:.1f}, {e2e['ci95_high'] * 1000:.1f}]")
        assert cells[10] == f"{m['parameters']:,}"
        assert cells[13] == str(m["dissection"]["records"])


def test_measured_figures_are_filled_in(run):
    models = by_cli(run)
    assert models["yolo11n-detect"]["parameters"] == 2_616_248
    assert models["depth-anything-v2-small"]["parameters"] == 24_785_089
    assert models["mobilesam"]["parameters"] == 10_130_092
    for m in models.values():
        assert m["gflops"] > 0.1
        assert m["load_seconds"] > 0
        assert m["memory"]["peak_bytes"] >= m["memory"]["cpu_rss_before_load_bytes"] > 0
        assert m["input_shape"][0] == 1 and m["input_shape"][1] == 3
    # Inputs as the network really receives them.
    da = models["depth-anything-v2-small"]["input_shape"]
    # DPT's processor keeps the aspect ratio, picking the scale closest to 1: one side is 518.
    assert da[2] % 14 == 0 and da[3] % 14 == 0 and 518 in da[2:]
    assert models["yolo11n-detect"]["input_shape"][2] % 32 == 0
    assert models["mobilesam"]["input_shape"][2:] == [1024, 1024]
    assert models["mobilesam"]["config"]["sam_prompt"] == "box"


def test_layer_folders_are_complete(run):
    for m in run["json"]["models"]:
        folder = Path(m["dissection"]["folder"])
        meta = strict_json_loads((folder / "layers_metadata.json").read_text())
        records = meta["records"]
        assert meta["num_records"] == len(records) == m["dissection"]["records"]
        assert [r["index"] for r in records.values()] == list(range(len(records)))
        named = set()
        for key, r in records.items():
            assert int(key) == r["index"] and len(key) >= 3
            for name in r.get("files", []):
                assert (folder / name).is_file(), name
                named.add(name)
        on_disk = {p.name for p in folder.glob("layer_*")}
        assert on_disk == named
        four_d = [r for r in records.values() if len(r.get("shape", [])) == 4]
        if m["cli_name"] == "yolo11n-detect":  # every 4-D output gets a PNG and an NPY
            assert all(f"{Path(r['files'][0]).stem}.png" in named for r in four_d)
            assert m["dissection"]["png_files"] == len(four_d) == len(list(folder.glob("*.png")))


def test_dissection_records_repeated_calls(run):
    """ultralytics shares one SiLU across Conv blocks: each call is its own record."""
    folder = Path(by_cli(run)["yolo11n-detect"]["dissection"]["folder"])
    records = json.loads((folder / "layers_metadata.json").read_text())["records"].values()
    silu = [r for r in records if r["type"] == "SiLU"]
    assert len(silu) > 50
    assert len({(r["name"], r["call"]) for r in silu}) == len(silu)
    assert max(r["call"] for r in silu) > 1


def test_feature_map_png_and_npy_shapes(run):
    folder = Path(by_cli(run)["depth-anything-v2-small"]["dissection"]["folder"])
    records = json.loads((folder / "layers_metadata.json").read_text())["records"]
    reshaped = [r for r in records.values() if r.get("reshaped")]
    assert reshaped, "ViT token outputs should be reshaped to a patch grid"
    r = reshaped[0]
    arr = np.load(folder / r["files"][1])
    assert arr.ndim == 3 and arr.shape[0] == min(8, r["shape"][2])
    with Image.open(folder / r["files"][0]) as im:
        assert im.format == "PNG" and im.mode == "RGB"


def test_markdown_report_links_resolve_to_pngs(run):
    md = run["md_path"].read_text()
    assert md.startswith("# Vision model benchmark report")
    assert "Warning: random weights" in md.split("## System")[0]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert any("latency" in line for line in links) and any("memory" in line for line in links)
    # one output picture and one activation chart per model
    for m in run["json"]["models"]:
        assert any(line.endswith(f"{m['model']}_output.png") for line in links), m["model"]
        assert any(line.endswith(f"{m['model']}_activations.png") for line in links), m["model"]
    for link in links:
        path = run["results_dir"] / link
        assert path.is_file(), link
        with Image.open(path) as im:
            im.verify()
            assert im.format == "PNG"
    for folder_link in re.findall(r"\]\((\.\./viz/[^)]+/)\)", md):
        assert (run["results_dir"] / folder_link).is_dir()


def test_time_breakdown_shares_add_up(run):
    md = run["md_path"].read_text()
    for m in run["json"]["models"]:
        tb = m["time_breakdown"]
        assert sum(b["share"] for b in tb["blocks"]) == pytest.approx(1.0, abs=0.01)
        assert 1 <= len(tb["top_leaves"]) <= 10
        section = md.split(f"## {m['model']}\n")[1].split("\n## ")[0]
        assert "### Where the time goes" in section and "### Inside the model" in section
        shares = [float(s) for s in re.findall(r"\| ([\d.]+)% \|\n", section.split("Ten most")[0])]
        assert sum(shares) == pytest.approx(100, abs=1.0)


def test_progress_lines(run):
    out = run["stdout"]
    total = 1 + (WARMUP + RUNS) * 2
    for tag in (
        "[LOAD]",
        f"[INFER 1/{total}]",
        f"[INFER {total}/{total}]",
        "(warm-up)",
        "[STATS]",
        "[DISSECT]",
        "[MEMORY]",
        "[CLEANUP]",
        "[COMPLETE]",
    ):
        assert tag in out
