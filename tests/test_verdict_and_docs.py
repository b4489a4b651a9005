"""The answer first: the report's verdict block from synthetic results (a failed model, a variant that
passes, none that passes, a throttled run), the header's tense, the machine named, speed-ups in words,
the command line's manners (a closed pipe, --version), and the README and docs/: every relative link
resolves and every command in the README's code blocks parses."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPT
from test_cli_and_report import make_result

from vision_bench.measure.environment import cpu_identity
from vision_bench.records.run_document import read_document
from vision_bench.reports.compare import compare_pair
from vision_bench.reports.render_markdown import markdown_anchor, render_markdown
from vision_bench.reports.report_model import cpu_text, features_text, header_blocks
from vision_bench.reports.verdict import verdict_blocks
from vision_bench.variants.variants_report import relative_speed

DOCS = ROOT / "docs"
VERDICT_MAX_LINES = 15  # the target: the verdict fits on one screen of Markdown


def variant(name, forward, passes=None, error=None, reference=False, reasons=()):
    """A complete variant's record: its forward median (seconds) and its parity (None: the reference)."""
    record = {"variant": name, "status": "complete", "latency_forward": {"n": 6, "median": forward}}
    if reference:
        return record | {"reference": True}
    parity = {"verdict": "pass" if passes else "fail", "reasons": list(reasons), "worst": {"normalised_error": error}}
    return record | {"parity": parity}


def with_variants(result, reference_forward, *variants):
    for v in variants:
        if not v.get("reference"):
            v["speedup_forward"] = reference_forward / v["latency_forward"]["median"]
    return result | {"variants": [variant("torch-fp32", reference_forward, reference=True), *variants]}


def document(models, status="incomplete", total_seconds=152.4, **extra):
    return {
        "schema": "unified-benchmark/3",
        "run_id": "20260101_000000",
        "started": "2026-01-01T00:00:00",
        "status": status,
        "total_seconds": total_seconds,
        "command": "unified_benchmark.py --variants torch-fp32,torch-bf16",
        "config": {"weights": "random"},
        "images": ["a.jpg", "b.jpg"],
        "models": models,
        **extra,
    }


def synthetic_run() -> dict:
    """Four models: one whose bf16 passes parity and is faster, one whose variants all fail parity, one
    throttled during its timed runs, and one that failed in its forward pass."""
    fast = with_variants(
        make_result("Fast", 0.010, peak=300e6) | {"weights": "random"},
        0.008,
        variant("torch-bf16", 0.004, passes=True, error=0.004),
        variant("torch-fp16", 0.010, passes=True, error=0.002),
    )
    fragile = with_variants(
        make_result("Fragile", 0.050, peak=900e6) | {"weights": "random"},
        0.040,
        variant("torch-bf16", 0.020, passes=False, error=0.08, reasons=["image 0: normalised error 0.08 > 0.05"]),
        variant("torch-fp16", 0.030, passes=False, error=0.3, reasons=["image 0: normalised error 0.3 > 0.05"]),
    )
    fragile["memory"]["peak_over_baseline_bytes"] = 20e6  # the least memory of its own, though not the lowest peak
    hot = make_result("Hot", 0.030, peak=500e6) | {"weights": "random"}
    hot["machine_state"] = {
        "runs_sampled": 6,
        "flagged": {"throttled": 2, "shared": 0},
        "clean": False,
        "warnings": ["2 of 6 timed runs throttled (thermal slowdown)"],
    }
    hot["runs"] = [{"image": "a.jpg", "kind": "timed", "total_s": 0.03, "state": {"flags": ["throttled"]}}]
    broken = {
        "model": "Broken",
        "status": "failed",
        "weights": "random",
        "error": {"type": "OutOfMemoryError", "message": "CUDA out of memory\nsecond line", "phase": "forward"},
    }
    return document([fast, fragile, hot, broken])


@pytest.fixture()
def verdict_md() -> str:
    return render_markdown(verdict_blocks(read_document(synthetic_run())))


def test_the_verdict_names_the_failed_model_with_its_one_line_reason(verdict_md):
    assert "**Run incomplete.** 3 of 4 models complete; took 152 s." in verdict_md
    assert "**Broken failed** in forward: OutOfMemoryError: CUDA out of memory" in verdict_md
    assert "second line" not in verdict_md  # one line


def test_the_verdict_names_the_fastest_and_the_leanest_with_the_interval(verdict_md):
    assert (
        "Fastest: **Fast**, 10.0 ms [5.0, 20.0] end to end (its interval overlaps Hot's: not shown faster)"
        in verdict_md
    )
    assert "leanest: **Fragile**, 19.1 MB of its own (peak 858.3 MB)" in verdict_md


def test_the_verdict_picks_the_fastest_variant_that_passes_parity(verdict_md):
    assert "Fast: **torch-bf16** passes parity, forward 2.00x faster than torch-fp32." in verdict_md
    assert "torch-fp16" not in verdict_md.split("Fast: ")[1].splitlines()[0]  # slower than bf16: not named


def test_the_verdict_says_none_passes_with_the_nearest_miss(verdict_md):
    line = next(line for line in verdict_md.splitlines() if line.startswith("- Fragile:"))
    assert "**none passes** parity; nearest miss torch-bf16 (image 0: normalised error 0.08 > 0.05" in line
    assert "forward 2.00x faster than torch-fp32" in line and "torch-fp16" not in line


def test_the_verdict_puts_the_machine_state_in_one_line(verdict_md):
    lines = [line for line in verdict_md.splitlines() if "Machine state" in line]
    assert len(lines) == 1
    assert "machine **not clean** during the timed runs of every model: 2 of 6 timed runs ran throttled" in lines[0]
    assert "flagged runs in the statistics of Hot" in lines[0]
    assert lines[0].count("throttled") == 1  # the file's own wording of the same count is not repeated


def test_the_verdict_says_what_the_weights_were_and_fits_on_a_screen(verdict_md):
    assert "**Warning: random weights.** Every model ran with random weights" in verdict_md
    assert len(verdict_md.strip().splitlines()) <= VERDICT_MAX_LINES


def test_a_passing_variant_slower_than_the_reference_keeps_the_reference():
    slow = with_variants(make_result("Slow", 0.01), 0.008, variant("torch-bf16", 0.068, passes=True, error=0.001))
    md = render_markdown(verdict_blocks(read_document(document([slow], status="complete"))))
    assert "Slow: keep **torch-fp32**; torch-bf16 passes parity but its forward is 8.50x slower than torch-fp32." in md
    assert "Machine state: not recorded." in md and "Weights: pretrained." not in md


def test_eight_models_with_two_variants_fit_on_a_screen():
    models = [
        with_variants(make_result(f"M{i}", 0.01 * (i + 1)), 0.01, variant("torch-bf16", 0.02, passes=i % 2, error=0.01))
        for i in range(8)
    ]
    md = render_markdown(verdict_blocks(read_document(document(models, status="complete"))))
    assert len(md.strip().splitlines()) <= VERDICT_MAX_LINES, md


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("complete", "took 152 s"),
        ("incomplete", "took 152 s"),
        ("running", "152 s so far"),
        ("interrupted", "152 s so far"),
    ],
)
def test_the_header_says_took_once_the_run_ended(status, words):
    header = render_markdown(header_blocks(read_document(document([], status=status))))
    assert words in header
    assert ("so far" in header) == (status in ("running", "interrupted"))


def test_speed_ups_are_worded_so_they_cannot_be_misread():
    assert relative_speed(2.25, "torch-fp32") == "2.25x faster than torch-fp32"
    assert relative_speed(1 / 1.3, "torch-fp32") == "1.30x slower than torch-fp32"
    assert relative_speed(1.001, "torch-fp32") == "as fast as torch-fp32"


CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_fp16 avx512_vnni amx_bf16 amx_tile amx_int8
physical id\t: 0
core id\t\t: 0

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_fp16 avx512_vnni amx_bf16 amx_tile amx_int8
physical id\t: 0
core id\t\t: 0

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_fp16 avx512_vnni amx_bf16 amx_tile amx_int8
physical id\t: 0
core id\t\t: 1
"""


def test_the_machine_is_named_with_its_cores_threads_and_instruction_sets():
    cpu = cpu_identity(CPUINFO)
    assert cpu == {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "cpu_cores": 2,
        "cpu_threads": 3,
        "cpu_features": ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile"]
        + ["amx_bf16", "amx_int8"],
    }
    system = read_document(document([], system={**cpu, "cpu_count": 3, "torch_threads": 3})).system
    assert cpu_text(system) == "Intel(R) Xeon(R) Platinum 8480+, 2 cores, 3 threads; torch threads 3"
    assert features_text(system).endswith("(not: avx_vnni, amx_fp16)")
    assert cpu_identity("") == {"cpu_model": None, "cpu_cores": None, "cpu_threads": None, "cpu_features": None}


def test_compare_says_when_the_runs_were_on_different_cpus():
    model = make_result("A", 0.01) | {"cli_name": "a"}
    base = document([model], system={"cpu_model": "AMD EPYC"})
    new = document([model], system={"cpu_model": "Intel Xeon"})
    warnings = compare_pair(base, new).warnings
    assert any("different CPUs or GPUs (CPU AMD EPYC -> Intel Xeon)" in w for w in warnings)
    older = document([model], system={})  # a file from before the CPU was named
    assert not any("different CPUs" in w for w in compare_pair(older, new).warnings)


@pytest.mark.parametrize("args", [["--list-models"], ["--help"], ["--version"]])
def test_a_closed_pipe_ends_quietly(args):
    """`--list-models | head -3`: the reader is gone before the tool writes; no traceback."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before the tool writes a line
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode in (0, 141)


def test_version_names_the_tool_and_the_schema():
    out = subprocess.run([sys.executable, str(SCRIPT), "--version"], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"unified_benchmark\.py \d+\.\d+\.\d+ \(results schema unified-benchmark/\d+\)\n", out.stdout)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_every_relative_link_in_the_readme_and_docs_resolves():
    link = re.compile(r"\]\(([^)\s]+)\)")
    checked = 0
    for page in markdown_files():
        text = page.read_text(encoding="utf-8")
        anchors = {markdown_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
        for target in link.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path) if path else page
            assert resolved.exists(), f"{page.name}: {target}"
            if anchor and resolved.suffix == ".md":
                found = anchors if not path else {markdown_anchor(h) for h in heading_lines(resolved)}
                assert anchor in found, f"{page.name}: {target}"
            checked += 1
    assert checked > 10


def heading_lines(path: Path) -> list[str]:
    return re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = sorted(DOCS.glob("*.md"))
    assert len(pages) >= 10
    for page in pages:
        assert f"(docs/{page.name})" in readme, page.name


def readme_commands() -> list[list[str]]:
    """Every `python unified_benchmark.py ...` line of the README's bash blocks, as arguments."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("python unified_benchmark.py"):
                commands.append(shlex.split(line)[2:])
    return commands


def test_every_command_in_the_readme_parses(ub):
    """Each command is a valid invocation: the options parse and pass their checks (no model runs)."""
    from vision_bench.cli import build_parser, check_read_back, check_sampling

    commands = readme_commands()
    assert len(commands) >= 6
    defaults = ub.cli.RunDefaults(1, 1, 1, ROOT, ROOT, ROOT)
    for args in commands:
        parsed = build_parser(ub.MODELS_BY_CLI_NAME, defaults).parse_args(args)
        check_read_back(parsed)
        if not (parsed.list_models or parsed.compare or parsed.merge):
            check_sampling(parsed, defaults)


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "```bash\npython -m pytest -q tests\n```" in readme  # the command .ci/run runs
