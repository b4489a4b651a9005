"""What the reports show of --divergence, from a synthetic results dict written through the tool's own
report writer (write_report_files): the Markdown section, the chart, the results file against the
published schema, and the HTML explorer's error overlay in a real headless Chromium.

The model has 40 records: one own error over the tolerance (the culprit, #17), one infinite (#25,
non-finite variant values: null in the JSON), one without a shadow call (#30, in place), one exact
zero (#5) and a module called twice (the shared activation)."""

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from test_html_report import browser, open_page, page_log  # noqa: F401  (the headless Chromium fixture)

from vision_bench.common import UsageError, strict_json
from vision_bench.divergence.divergence_report import explorer_overlay
from vision_bench.divergence.layer_passes import summarise_records
from vision_bench.measure.stats import latency_stats
from vision_bench.records import inspection
from vision_bench.records.codec import from_json, to_json
from vision_bench.records.divergence import DivergenceEntry, LayerRecord, Suggestion, read_divergence
from vision_bench.records.model_result import document_with_records, with_records
from vision_bench.reports.results_file import RESULTS_SCHEMA, read_results
from vision_bench.reports.write import write_report_files

TOLERANCE = 0.0156
CULPRIT, INFINITE, NO_SHADOW, ZERO = 17, 25, 30, 5
TYPES = ("Conv2d", "BatchNorm2d", "SiLU", "Linear")


def layer(i: int) -> tuple[str, int, str]:
    """(module path, call, type) of record i: every third SiLU is the shared activation, called again."""
    kind = TYPES[i % 4]
    if kind == "SiLU" and i % 3 == 0:
        return "backbone.act", 1 + sum(1 for j in range(i) if TYPES[j % 4] == "SiLU" and j % 3 == 0), kind
    return f"backbone.stage{i // 8}.block{i // 4}.{kind.lower()}", 1, kind


def figures(error: float, cosine: float | None = None) -> dict:
    return {
        "relative_l2": error,
        "cosine": 1 - error**2 / 2 if cosine is None else cosine,
        "max_abs": error * 3,
        "normalised": error * 1.5,
    }


def divergence_records() -> list[dict]:
    records = []
    for i in range(40):
        name, call, kind = layer(i)
        own = 0.0 if i == ZERO else 1e-4 * (1 + i % 5)
        record = {
            "index": i,
            "name": name,
            "call": call,
            "type": kind,
            "shape": [1, 16, 8, 8],
            "propagated": figures(2e-4 * (i + 1)),
            "shadow": figures(own),
        }
        if i == CULPRIT:
            record["shadow"] = figures(0.05)
        if i == INFINITE:
            infinite = {
                "relative_l2": math.inf,
                "cosine": None,
                "max_abs": math.inf,
                "normalised": math.inf,
                "non_finite": 3,
            }
            record["shadow"], record["propagated"] = dict(infinite), dict(infinite)
        if i == NO_SHADOW:
            del record["shadow"]
            record["note"] = "in-place module: its input is overwritten, no shadow call"
        records.append(record)
    return records


def divergence_entry() -> dict:
    records = divergence_records()
    entry = to_json(summarise_records([from_json(LayerRecord, r) for r in records], TOLERANCE))
    entry.update(
        variant="torch-bf16",
        status="complete",
        image="bus.jpg",
        tolerance=TOLERANCE,
        metric="relative_l2",
        modes=["propagated", "shadow"],
        level="leaf",
        records=records,
        unmatched_in_variant=[],
        unmatched_count=0,
        passes={
            "reference_s": 0.25,
            "shadow_s": 1.3,
            "variant_s": 1.5,
            "spill_wait_s": 0.0,
            "forward_equivalents": 3.4,
        },
        spilled_bytes=114_000_000,
        memory={"peak_bytes": 900 << 20, "peak_kind": "CPU resident set"},
        suggestion={
            "status": "passes",
            "reason": None,
            "modules": ["backbone.stage2.block4.batchnorm2d", "backbone.act", "backbone.stage3.block6.batchnorm2d"],
            "tried": [
                {"modules": 1, "verdict": "fail", "worst": {"normalised_error": 0.08}},
                {"modules": 3, "verdict": "pass", "worst": {"normalised_error": 0.01}},
            ],
            "latency_forward": to_json(latency_stats([0.09, 0.091, 0.092])),
            "speedup_forward": 1.3,
            "parity": {"verdict": "pass", "reasons": [], "worst": {"normalised_error": 0.01}},
            "plain": {"speedup_forward": 1.36, "verdict": "fail", "worst": {"normalised_error": 0.2}},
        },
    )
    return entry


def dissection_record(i: int) -> dict:
    name, call, kind = layer(i)
    return {
        "index": i,
        "name": name,
        "call": call,
        "type": kind,
        "shape": [1, 16, 8, 8],
        "dtype": "float32",
        "min": -1.0 - i / 10,
        "max": 1.0 + i / 10,
        "mean": 0.01 * i,
        "std": 0.5 + i / 40,
        "zero_fraction": 0.0,
        "nan_count": 0,
        "inf_count": 0,
        "files": [],
    }


def synthetic_results(viz: Path) -> dict:
    folder = viz / "Net"
    folder.mkdir(parents=True)
    (folder / "layers_metadata.json").write_text(
        json.dumps({"records": {str(i): dissection_record(i) for i in range(40)}})
    )
    stats = to_json(latency_stats([0.10, 0.11, 0.12, 0.105, 0.115]))
    model = {
        "model": "Net",
        "cli_name": "net",
        "status": "complete",
        "weights": "random",
        "weights_source": "random",
        "dtype": "float32",
        "parameters": 1_000_000,
        "flops": 2_000_000,
        "gflops": 0.002,
        "input_shape": [1, 3, 64, 64],
        "nominal_input_size": 64,
        "load_seconds": 0.5,
        "fps": 9.0,
        "runs": [{"image": "bus.jpg", "kind": "cold", "cold": True, "total_s": 1.0}]
        + [
            {"image": "bus.jpg", "kind": "timed", "cold": False, "total_s": t} for t in (0.10, 0.11, 0.12, 0.105, 0.115)
        ],
        "cold_start": {"image": "bus.jpg", "total_s": 1.0},
        "latency_end_to_end": stats,
        "latency_forward": stats,
        "memory": {"peak_bytes": 600 << 20, "peak_over_baseline_bytes": 100 << 20, "peak_kind": "CPU resident set"},
        "variants": [
            {"variant": "torch-fp32", "status": "complete", "reference": True},
            {
                "variant": "torch-bf16",
                "status": "complete",
                "speedup_forward": 1.36,
                "parity": {
                    "verdict": "fail",
                    "reasons": ["normalised error 0.2 > 0.03"],
                    "worst": {"normalised_error": 0.2, "worst_part": "boxes"},
                },
            },
        ],
        "divergence": [
            divergence_entry(),
            {
                "variant": "onnxruntime",
                "status": "unsupported",
                "reason": "onnxruntime is not installed (pip install onnxruntime)",
            },
        ],
        "dissection": {
            "folder": str(folder),
            "records": 40,
            "leaf_modules": 37,
            "seconds": 0.4,
            "png_files": 0,
            "npy_files": 0,
            "nan_records": 0,
            "inf_records": 0,
            "type_counts": {t: 10 for t in TYPES},
            "widest_range": [],
            "most_zeros": [],
        },
    }
    return {
        "schema": RESULTS_SCHEMA,
        "run_id": "20260101_000000",
        "status": "complete",
        "started": "2026-01-01T00:00:00",
        "written": "2026-01-01T00:01:00",
        "total_seconds": 60.0,
        "command": "unified_benchmark.py --divergence --variants torch-bf16,onnxruntime",
        "config": {
            "image_source": "test",
            "runs_per_image": 5,
            "warmup_rounds": 1,
            "seed": 0,
            "weights": "random",
            "device": "cpu",
            "torch_threads": 1,
            "isolation": "process",
        },
        "system": {
            "os": "Linux",
            "python": "3.12",
            "torch": "2.x",
            "transformers": "5",
            "ultralytics": "8",
            "cuda_available": False,
            "cuda_version": None,
            "gpu": None,
            "cpu": "x86_64",
            "cpu_count": 2,
            "torch_threads": 1,
            "device": "cpu",
        },
        "images": ["/x/bus.jpg"],
        "models": [model],
    }


def context(root: Path, run_id: str) -> SimpleNamespace:
    results = root / "results"
    ctx = SimpleNamespace(
        run_id=run_id, results_dir=results, viz_dir=root / "viz", assets_dir=results / f"report_{run_id}"
    )
    ctx.assets_dir.mkdir(parents=True, exist_ok=True)
    return ctx


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("divergence_report")
    data = document_with_records(synthetic_results(root / "viz"))  # built by hand: its families as records
    ctx = context(root, data["run_id"])
    paths = write_report_files(data, ctx)  # the tool's own writer: JSON, CSV, Markdown, HTML
    return {"data": data, "ctx": ctx, "paths": paths, "md": paths["md"].read_text(encoding="utf-8")}


def section(md: str) -> str:
    start = md.index("### Where the variants diverge")
    return md[start : md.index("\n### ", start + 1)]


def test_markdown_names_the_culprit_lists_the_top_five_and_gives_the_suggestion(report):
    md = report["md"]
    text = section(md)
    assert md.index("### Variants") < md.index("### Where the variants diverge")  # after the variants table
    assert (
        "first divergent layer #17 `backbone.stage2.block4.batchnorm2d` (call 1, BatchNorm2d): own error 0.05 > 0.0156, "
        "inherited 0.0036; 2 of 40 compared records over the tolerance by their own error."
    ) in text
    assert (
        "The inherited error first passes the tolerance at #25 `backbone.stage3.block6.batchnorm2d` (call 1, BatchNorm2d)."
        in text
    )
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| # | module | call | type | own error | inherited error | cosine (own / inherited) |"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    assert len(rows) == 5
    assert rows[0][:6] == [
        "25",
        "`backbone.stage3.block6.batchnorm2d`",
        "1",
        "BatchNorm2d",
        "inf",
        "inf",
    ]  # the infinite one first
    assert rows[0][6] == "n/a / n/a"
    assert rows[1][:6] == ["17", "`backbone.stage2.block4.batchnorm2d`", "1", "BatchNorm2d", "0.05", "0.0036"]
    assert rows[1][6] == "0.9987500 / 0.9999935"
    assert str(NO_SHADOW) not in [row[0] for row in rows]
    assert (
        "- Suggestion: torch-bf16 with these 3 modules in fp32: 1.30x faster, parity pass "
        "(plain torch-bf16: 1.36x, fail)."
    ) in text
    assert (
        "- Kept in fp32: `backbone.stage2.block4.batchnorm2d`, `backbone.act`, `backbone.stage3.block6.batchnorm2d`"
        in text
    )
    assert (
        "- The passes took 3.05 s (fp32 reference 0.25 s, shadow calls 1.30 s, torch-bf16 1.50 s, waiting on the "
        "spill 0.00 s), 3.4 forward passes' worth; 108.7 MB of reference outputs spilled to disk"
    ) in text
    assert (
        "#### onnxruntime\n\nNot compared (unsupported): onnxruntime is not installed (pip install onnxruntime)" in text
    )
    assert (
        f"![Net torch-bf16: own and inherited error against execution order]({report['ctx'].assets_dir.name}/"
        "Net_divergence_torch-bf16.png)" in text
    )


def test_the_sentences_for_no_culprit_and_for_no_small_set(report, tmp_path):
    from vision_bench.divergence.divergence_report import culprit_sentence, suggestion_sentence

    [entry] = read_divergence([divergence_entry()])
    calm = [r for r in entry.records if r.index not in (CULPRIT, INFINITE)]
    entry = dataclasses.replace(entry, records=calm, **vars(summarise_records(calm, TOLERANCE)))
    assert (
        "no layer's own error passes the tolerance; the largest is 0.0005 at #4 "
        "`backbone.stage0.block1.conv2d` (call 1, Conv2d); 0 of 38 compared records over the tolerance."
    ) in culprit_sentence(entry)
    entry.suggestion = from_json(
        Suggestion,
        {
            "status": "no small set",
            "reason": "every set of up to 8 modules still fails parity",
            "tried": [
                {"modules": 1, "verdict": "fail", "worst": {"normalised_error": 0.2, "worst_part": "boxes"}},
                {"modules": 8, "verdict": "fail"},
            ],
            "plain": {"speedup_forward": 1.36, "verdict": "fail"},
        },
    )
    assert suggestion_sentence(entry) == (
        "Suggestion: no small set of modules kept in fp32 makes torch-bf16 pass parity (plain torch-bf16: 1.36x, "
        "fail); tried sets of 1 (fail, worst normalised error 0.2 (boxes)), 8 (fail): every set of up to 8 modules "
        "still fails parity."
    )


def test_the_chart_is_a_png_of_the_errors(report):
    path = report["ctx"].assets_dir / "Net_divergence_torch-bf16.png"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (900, 340)
        assert len(image.convert("RGB").getcolors(1 << 16) or []) > 20  # drawn, not blank
    assert not list(report["ctx"].assets_dir.glob("Net_divergence_onnxruntime*"))  # unsupported: no chart


def test_the_results_file_with_divergence_validates_and_its_report_reads_the_same(report, tmp_path):
    read = read_results(report["paths"]["json"], "--compare")
    entry = read.models[0].divergence[0]
    written = json.loads(report["paths"]["json"].read_text(encoding="utf-8"))["models"][0]["divergence"][0]
    assert written["records"][INFINITE]["shadow"]["relative_l2"] is None  # inf became null
    infinite = entry.record_at(INFINITE)
    assert infinite.shadow.relative_l2 == math.inf and infinite.shadow.non_finite == 3  # and is read back as inf
    assert (
        infinite.shadow.figure("cosine") is None
        and to_json(infinite.shadow).keys() == written["records"][INFINITE]["shadow"].keys()
    )
    assert entry.top_own[0].own is None
    # What --merge would write from the file read back: the same section, "inf" where the JSON says null.
    again = context(tmp_path, read.run_id)
    for png in report["ctx"].assets_dir.glob("*.png"):
        (again.assets_dir / png.name).write_bytes(png.read_bytes())
    assert section(write_report_files(read, again)["md"].read_text(encoding="utf-8")) == section(report["md"])
    # The schema still checks what it describes.
    bad = json.loads(report["paths"]["json"].read_text(encoding="utf-8"))
    bad["models"][0]["divergence"][0]["records"][3]["shadow"]["relative_l2"] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(strict_json(bad)))  # its families are records: written as the tool writes them
    with pytest.raises(
        UsageError,
        match=r"\$\.models\[0\]\.divergence\[0\]\.records\[3\]\.shadow\.relative_l2: "
        "expected minimum 0, found -1",
    ):
        read_results(path, "--compare")


def test_the_explorer_overlay_is_aligned_with_the_explorer_records():
    entries = read_divergence([divergence_entry(), {"variant": "onnxruntime", "status": "failed"}])
    records = [dissection_record(i) for i in reversed(range(40))]  # another order: matched by (name, call)
    layers = [from_json(inspection.LayerRecord, r) for r in records]  # as the report reads layers_metadata.json
    (overlay,) = explorer_overlay(with_records({"divergence": entries}), layers)
    pos = {r["index"]: p for p, r in enumerate(records)}
    assert overlay["variant"] == "torch-bf16" and overlay["matched"] == overlay["compared"] == 40
    assert len(overlay["own"]["relative_l2"]) == 40 and overlay["first"] == pos[CULPRIT]
    assert overlay["own"]["relative_l2"][pos[CULPRIT]] == 0.05
    assert overlay["own"]["relative_l2"][pos[INFINITE]] == overlay["inherited"]["max_abs"][pos[INFINITE]] == "inf"
    assert overlay["own"]["relative_l2"][pos[NO_SHADOW]] is None and "in-place" in overlay["notes"][str(pos[NO_SHADOW])]
    assert overlay["own"]["relative_l2"][pos[ZERO]] == 0
    assert "3 value(s) finite in the reference" in overlay["notes"][str(pos[INFINITE])]
    shared = [r for r in records if r["name"] == "backbone.act"]
    assert len(shared) > 1 and len({overlay["inherited"]["relative_l2"][pos[r["index"]]] for r in shared}) == len(
        shared
    )


def test_the_explorer_colours_records_by_error_and_shows_own_beside_inherited(report, browser):  # noqa: F811
    open_page(browser, report["paths"]["html"])
    browser.execute_script("document.querySelectorAll('details.fold').forEach(d => { d.open = true; })")  # unfolded
    root = browser.find_element(By.CSS_SELECTOR, ".explorer")
    variant = Select(root.find_element(By.CSS_SELECTOR, "select.ex-variant"))
    assert [o.text for o in variant.options] == ["no error overlay", "error of torch-bf16"]
    assert variant.first_selected_option.text == "error of torch-bf16"
    rows = root.find_elements(By.CSS_SELECTOR, "tbody tr")

    def colours():
        return browser.execute_script(
            "return Array.from(arguments[0].querySelectorAll('tbody tr')).map(tr => tr.style.backgroundColor)", root
        )

    own = colours()
    assert own[NO_SHADOW] == "" and all(own[i] for i in range(40) if i != NO_SHADOW)
    assert len(set(own)) > 4 and own[CULPRIT] != own[0]
    assert "over" in rows[CULPRIT].get_attribute("class") and "over" not in rows[0].get_attribute("class")
    assert rows[CULPRIT].find_elements(By.TAG_NAME, "td")[-1].text == "0.05"
    assert rows[INFINITE].find_elements(By.TAG_NAME, "td")[-1].text == "inf"
    legend = root.find_element(By.CSS_SELECTOR, ".ex-legend").text
    assert "torch-bf16, own error against fp32" in legend and "tolerance 0.0156" in legend
    assert "first divergent: #17 backbone.stage2.block4.batchnorm2d" in legend
    assert len(root.find_elements(By.CSS_SELECTOR, "svg.ex-strip rect")) == 40

    root.find_element(By.CSS_SELECTOR, ".ex-legend button").click()  # go to the culprit
    assert root.find_element(By.CSS_SELECTOR, "tbody tr.selected").get_attribute("data-index") == str(CULPRIT)
    cells = [
        [c.text for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
        for tr in root.find_elements(By.CSS_SELECTOR, ".ex-div tr")
    ]
    assert cells[0] == ["", "own (layer alone)", "inherited (whole network)"]
    assert cells[1] == ["relative L2", "0.05", "0.0036"]
    assert cells[2] == ["cosine", "0.9987500", "0.9999935"]
    assert cells[3] == ["max |a-b|", "0.15", "0.0108"] and cells[4][0] == "max |a-b| / max |b|"
    detail = root.find_element(By.CSS_SELECTOR, ".ex-detail").text
    assert "the first divergent record" in detail and "std" in detail  # the reference's statistics stay

    Select(root.find_element(By.CSS_SELECTOR, "select.ex-mode")).select_by_value("inherited")
    inherited = colours()
    assert inherited != own and inherited[NO_SHADOW] != ""
    assert root.find_element(By.CSS_SELECTOR, "thead th:last-child").text.startswith("inherited error")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", rows[NO_SHADOW])
    rows[NO_SHADOW].click()
    assert "in-place module" in root.find_element(By.CSS_SELECTOR, ".ex-div").text
    variant.select_by_value("")
    assert set(colours()) == {""} and not root.find_elements(By.CSS_SELECTOR, ".ex-div")
    assert page_log(browser)[0] == []


def test_a_containers_own_operations_are_shown_with_their_own_figure_not_the_leaf_at_their_position():
    from vision_bench.divergence.divergence_report import divergence_rows

    leaf = {
        "index": 3,
        "name": "a.leaf",
        "call": 1,
        "type": "Linear",
        "shadow": {"relative_l2": 0.001},
        "propagated": {"relative_l2": 0.002},
    }
    entry = {
        "variant": "torch-bf16",
        "records": [leaf],
        "top_own": [
            {
                "index": 3,
                "name": "a",
                "call": 1,
                "type": "Attention (its own operations)",
                "kind": "ops",
                "own": 0.5,
                "inherited": None,
            },
            {
                "index": 3,
                "name": "a.leaf",
                "call": 1,
                "type": "Linear",
                "kind": "leaf",
                "own": 0.001,
                "inherited": 0.002,
            },
        ],
    }
    ops_row, leaf_row = divergence_rows(from_json(DivergenceEntry, {**entry, "status": "complete"}))
    assert ops_row[1:5] == ["a", "1", "Attention (its own operations)", "0.5"]
    assert leaf_row[1:5] == ["a.leaf", "1", "Linear", "0.001"]
