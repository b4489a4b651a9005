"""One report model, two renderers: a run's report built once as blocks and written as Markdown and
as the HTML page carries the same headings and the same numbers (the layer explorer's data, which
only the page has, excepted). The run is the synthetic one of test_divergence_report, with what a
real run adds: per-image timings, a time breakdown, a profiler trace, the run's phase totals, the
machine state, a worker's record and a failed model with its last output."""

import copy
import html
import re

import pytest
from test_divergence_report import context, synthetic_results
from test_trace import synthetic_cuda_events

from vision_bench.document.blocks import Explorer, Fold, Heading, Section
from vision_bench.inspect.trace import summarize_trace
from vision_bench.records.codec import to_json
from vision_bench.reports.html import html_report
from vision_bench.reports.markdown import markdown_report
from vision_bench.reports.render_html import inline
from vision_bench.reports.report_model import build_report

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def one_run(root) -> dict:
    data = synthetic_results(root / "viz")
    net = data["models"][0]
    steady = dict(net["latency_end_to_end"])
    net.update(
        latency_per_image={
            "bus.jpg": {
                "image_size": [810, 1080],
                "first_run_s": 1.0,
                "first_is_cold_start": True,
                "warmup_s": [0.2, 0.15],
                "steady": steady,
            }
        },
        latency_phases_median={"preprocess": 0.004, "forward": 0.09, "postprocess": 0.006},
        phase_seconds={"load": 0.5, "cold_start": 1.0, "timed": 0.55, "dissection": 0.4},
        worker={"pid": 4321, "exit_code": 0, "signal": None},
        config={"conf": 0.25},
        prediction_summary={"boxes": 3, "top score": 0.8765},
        time_breakdown={
            "forward_ms": 87.5,
            "blocks": [
                {"block": "backbone", "ms": 60.0, "share": 0.686},
                {"block": "head", "ms": 27.5, "share": 0.314},
            ],
            "top_leaves": [
                {"name": "backbone.stage0.block0.conv2d", "type": "Conv2d", "calls": 2, "ms": 12.3, "share": 0.141}
            ],
        },
        machine_state={
            "runs_sampled": 5,
            "flagged": {"throttled": 0, "shared": 1},
            "load1": [0.5, 1.25],
            "clean": False,
            "warnings": ["another process used the CPU in 1 of 5 runs"],
        },
    )
    net["dissection"]["widest_range"] = [
        {"index": 7, "name": "backbone.stage0.block1.silu", "call": 1, "type": "SiLU", "range": [-0.278, 31.5]}
    ]
    net["dissection"]["most_zeros"] = [
        {"index": 3, "name": "backbone.stage0.block0.linear", "call": 1, "type": "Linear", "zero_fraction": 0.425}
    ]
    summary = summarize_trace(synthetic_cuda_events(), ["a", "b"], {"a (Conv)": "a", "b (Mm)": "b"}, cuda=True)
    net["trace"] = {
        **to_json(summary),
        "file": "report_20260101_000000/Net_trace.json.gz",
        "bytes": 2048,
        "pass_wall_s": 0.21,
        "timed_median_s": 0.11,
        "overhead_ratio": 1.91,
        "activities": ["CPU", "CUDA"],
        "stacks": False,
        "left_out": ["Python call stacks (--trace-stacks adds them)"],
    }
    failed = {
        "model": "Broken",
        "cli_name": "broken",
        "status": "failed",
        "weights": "random",
        "runs": [],
        "error": {"type": "OutOfMemoryError", "phase": "timed", "message": "out of memory", "output_tail": ["step 3"]},
        "memory": {"cpu_rss_before_load_bytes": 2**30, "at_failure": {"cpu_peak_rss_bytes": 5 * 2**30}},
    }
    data.update(status="incomplete", models=[net, failed])  # a run with a failed model
    data["phase_totals"] = {"load": 0.5, "timed": 0.55, "measuring": 2.45, "overhead": 57.55, "wall": 60.0}
    return data


def markdown_text(md: str) -> str:
    """What a reader sees of the Markdown: pictures dropped (the page shows them as images), link labels kept."""
    md = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", md)
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", md)


def page_text(page: str) -> str:
    """The page's visible text: the main part, tags stripped (the explorers' JSON is a script, outside it)."""
    main = page[page.index("<main>") : page.index("</main>")]
    return html.unescape(re.sub(r"<[^>]+>", " ", main))


def markdown_headings(md: str) -> list[str]:
    return [line.lstrip("#").strip() for line in md.splitlines() if re.match(r"#{1,6} ", line)]


def page_headings(page: str) -> list[str]:
    found = [html.unescape(re.sub(r"<[^>]+>", "", h)) for _, h in re.findall(r"<h([1-6])[^>]*>(.*?)</h\1>", page)]
    return [h for h in found if not h.startswith("Layer explorer: ")]  # the explorer is the page's alone


@pytest.fixture()
def rendered(tmp_path):
    data = one_run(tmp_path)
    ctx = context(tmp_path, data["run_id"])
    return data, ctx, markdown_report(copy.deepcopy(data), ctx), html_report(copy.deepcopy(data), ctx)


def test_both_renderings_carry_the_same_headings_and_numbers(rendered):
    _, _, md, page = rendered
    assert markdown_headings(md) == page_headings(page)
    for heading in ("System", "Configuration", "Summary", "Findings", "Where the run's time went"):
        assert heading in markdown_headings(md)
    for heading in ("Failed or interrupted models", "Net", "Variants", "Where the variants diverge"):
        assert heading in markdown_headings(md)
    for heading in ("Where the time goes", "Profiler trace", "Inside the model", "Where the files are"):
        assert heading in markdown_headings(md)
    md_numbers, page_numbers = set(NUMBER.findall(markdown_text(md))), set(NUMBER.findall(page_text(page)))
    assert md_numbers == page_numbers, (md_numbers - page_numbers, page_numbers - md_numbers)
    for figure in ("87.5", "12.3", "31.5", "42.5", "57.5", "4321", "810", "150.0", "1.91"):  # from every part
        assert figure in md_numbers, figure


def test_the_facts_once_shown_in_one_report_only_are_in_both(rendered):
    _, _, md, page = rendered
    text = page_text(page)
    for fact in (
        "Where the run's time went",  # was Markdown only
        "Machine state during the timed runs",  # was Markdown only
        "numeric settings",
        "Runs: 1 cold start, 0 warm-up (not in the statistics), 5 timed",  # was HTML only
        "Wall time by phase: load 0.5 s",
        "Worker process: pid 4321, exit code 0",
        "warm-up ms",  # the per-image warm-up times, Markdown only
        "step 3",  # a failed worker's last output, HTML only
    ):
        assert fact in markdown_text(md) or fact in md, fact
        assert fact in text or fact in page, fact


def test_the_model_is_built_once_and_the_explorer_is_the_pages_alone(rendered):
    data, ctx, md, page = rendered
    blocks = build_report(data, ctx)
    sections = [b for b in blocks if isinstance(b, Section)]
    assert [s.title for s in sections] == ["Net"] and isinstance(sections[0].blocks[0], Heading)
    folds = [b for b in sections[0].blocks if isinstance(b, Fold)]  # the long parts, folded on the page
    explorers = [b for f in folds for b in f.blocks if isinstance(b, Explorer)]
    assert len(explorers) == 1 and len(explorers[0].records) == 40
    assert 'id="explorer-0"' in page and "explorer" not in md.lower().replace("layer explorer", "")


def test_inline_marks_are_read_from_escaped_text():
    text = 'a `<b>` [<script>alert(1)</script>](x"onmouseover="y) [`f.json`](f.json)'
    out = inline(text)
    assert "<script>" not in out and "<b>" not in out and '"onmouseover' not in out
    assert '<a href="f.json"><code>f.json</code></a>' in out


def test_the_worker_line_says_how_the_process_ended_in_words():
    from vision_bench.records.failure import WorkerRecord

    assert WorkerRecord(7, 0, None, "w.log").describe() == "pid 7, exit code 0, log w.log"
    assert WorkerRecord(7, -9, "SIGKILL").describe() == "pid 7, killed by SIGKILL"
    assert WorkerRecord(7).describe() == "pid 7, still running"


def test_the_report_names_the_commit_it_ran_from_dirty_or_not_and_the_label(tmp_path):
    data = one_run(tmp_path)
    data["label"] = "driver 560"
    data["source"] = [
        {"role": "working folder", "folder": "/repo", "commit": "abcdef1" + "0" * 33, "branch": "main", "dirty": True},
        {"role": "tool", "folder": "/tool", "commit": "1234567" + "0" * 33, "subject": "Faster", "dirty": False},
    ]
    ctx = context(tmp_path, data["run_id"])
    md = markdown_text(markdown_report(copy.deepcopy(data), ctx))
    page = page_text(html_report(copy.deepcopy(data), ctx))
    for text in (md, page):
        text = re.sub(r"\s+([,:)])", r"\1", " ".join(text.replace("`", "").split()))  # code marks and tags out
        assert "(driver 560) from commit abcdef1 dirty, started" in text
        assert "abcdef1 dirty (tracked files changed since the commit), branch main (in /repo)" in text
        assert "1234567: Faster (in /tool)" in text and "1234567 dirty" not in text
        assert re.search(r"label \(--label\)[ |]+driver 560", text) and "commit (working folder)" in text
    del data["label"], data["source"]
    plain = markdown_report(copy.deepcopy(data), ctx)
    assert "from commit" not in plain and "commit (working folder)" not in plain and "label (--label)" not in plain
