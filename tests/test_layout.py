"""The layout: unified_benchmark.py holds what users edit, vision_bench/ the machinery. Imports run
one way (no cycle, nothing imports unified_benchmark back), heavy libraries load only when used,
and the script works as a script, as a module, and through a worker process.

    python tests/test_layout.py      # prints the package's import graph
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vision_bench"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
# Functions still over MAX_FUNCTION_LINES, in folders other work is changing now: "path:function" -> why.
# Functions allowed over MAX_FUNCTION_LINES, each with the reason (none today): "path:function": "why".
LONG_FUNCTIONS_ALLOWED: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of this project it imports (at module level or inside functions)."""
    files = sorted(PACKAGE.rglob("*.py")) + [ROOT / "unified_benchmark.py"]
    known = {module_name(f) for f in files}
    graph = {}
    for f in files:
        name = module_name(f)
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module
                targets.add(stem)
                targets |= {f"{stem}.{a.name}" for a in node.names}  # `from . import x`
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_imports_run_one_way_without_cycles():
    graph = import_graph()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    back = [m for m, targets in graph.items() if m.startswith("vision_bench") and "unified_benchmark" in targets]
    assert not back, f"the package imports unified_benchmark: {back}"
    assert "vision_bench.cli" in graph["unified_benchmark"]


# Folder pairs that import each other, each with the reason it is by design.
FOLDER_PAIRS_ALLOWED = {
    ("variants", "divergence"): "a variant names how the divergence pass hooks it (`hooked()`, one module "
    "per variant); the divergence pass runs the registry's variants and their parity"
}


def folder_of(module: str) -> str:
    """The folder a module belongs to (`vision_bench.run.orchestrator` -> run); a top-level module of
    the package (`vision_bench.cli`) or the script is its own."""
    parts = module.split(".")
    in_a_folder = parts[0] == "vision_bench" and len(parts) > 1 and (PACKAGE / parts[1]).is_dir()
    return parts[1] if in_a_folder else module


def folder_graph() -> dict[str, set[str]]:
    """Folder -> the folders its modules import."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        mine = folder_of(module)
        graph.setdefault(mine, set()).update(folder_of(t) for t in targets if folder_of(t) != mine)
    return graph


def test_folders_import_one_way_but_the_allowed_pairs():
    """A capability folder builds on records/, measure/ and document/; run/ and reports/ build on the
    capabilities; nothing below imports what is above it."""
    graph = folder_graph()
    for below, above in FOLDER_PAIRS_ALLOWED:
        assert above in graph[below] and below in graph[above], f"{below} <-> {above} is no longer a pair"
        graph[below].discard(above)
    assert find_cycle(graph) is None, f"folder cycle: {' -> '.join(find_cycle(graph))}"
    assert not graph["records"] - {"records"}, "records/ imports nothing of the package but itself"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_too_long_and_each_says_what_it_owns():
    for f in sorted(PACKAGE.rglob("*.py")) + [ROOT / "unified_benchmark.py"]:
        text = f.read_text()
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{f.relative_to(ROOT)}: {len(text.splitlines())} lines"
        assert ast.get_docstring(ast.parse(text)), f"{f.relative_to(ROOT)} has no docstring"


def long_functions(tree: ast.AST, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of each function or method over `limit` lines, nested ones included."""
    return [
        (node.name, node.lineno, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_function_is_too_long_but_the_allowed_ones():
    """Functions stay under MAX_FUNCTION_LINES; LONG_FUNCTIONS_ALLOWED names those still over it, and
    an entry goes once its function is split."""
    found = []  # (path:function, what to print); a list, as two methods of a file may share a name
    for f in sorted(PACKAGE.rglob("*.py")) + [ROOT / "unified_benchmark.py"]:
        path = f.relative_to(ROOT).as_posix()
        for name, line, length in long_functions(ast.parse(f.read_text())):
            found.append((f"{path}:{name}", f"{length} lines ({path}:{line} {name})"))
    too_long = [text for key, text in found if key not in LONG_FUNCTIONS_ALLOWED]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(too_long)
    split = sorted(set(LONG_FUNCTIONS_ALLOWED) - {key for key, _ in found})
    assert not split, f"allowed to be long but no longer over {MAX_FUNCTION_LINES} lines, drop from the list: {split}"


def test_the_long_function_finder_counts_lines_of_functions_methods_and_nested_ones():
    def body(indent: str) -> str:
        return "".join(f"{indent}x = {i}\n" for i in range(MAX_FUNCTION_LINES))

    planted = ast.parse(
        "def long():\n" + body("    ") + "def short():\n    pass\n"
        "class C:\n    def method(self):\n        def inner():\n" + body(" " * 12)
    )
    assert sorted((name, length) for name, _, length in long_functions(planted)) == [
        ("inner", MAX_FUNCTION_LINES + 1),
        ("long", MAX_FUNCTION_LINES + 1),
        ("method", MAX_FUNCTION_LINES + 2),
    ]


def namespace_uses(tree: ast.AST) -> list[str]:
    """Where a module's code uses argparse or reads `.args` off something (ctx.args, getattr(x, "args"))."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
            found.append(f"{line}: import argparse")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
            found.append(f"{line}: from argparse import")
        elif isinstance(node, ast.Name) and node.id == "argparse":
            found.append(f"{line}: argparse")
        elif isinstance(node, ast.Attribute) and node.attr == "args":
            found.append(f"{line}: .args")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "args"
        ):
            found.append(f"{line}: {node.func.id}(..., 'args')")
    return found


def test_settings_reach_the_package_as_run_settings_not_the_argparse_namespace():
    """Only cli.py sees the command line's namespace; everything below it gets settings.RunSettings."""
    uses = {
        str(f.relative_to(ROOT)): found
        for f in sorted(PACKAGE.rglob("*.py"))
        if f.name != "cli.py" or f.parent != PACKAGE
        for found in [namespace_uses(ast.parse(f.read_text()))]
        if found
    }
    assert not uses, f"the argparse namespace below cli.py: {uses}"
    planted = ast.parse("import argparse\nx = ctx.args.seed\ny = getattr(ctx, 'args', None)\n")
    assert sorted(u.split(": ")[1] for u in namespace_uses(planted)) == [
        ".args",
        "getattr(..., 'args')",
        "import argparse",
    ]


def test_the_run_context_declares_every_attribute():
    """RunContext is a slotted dataclass: nothing adds an attribute to it from outside."""
    from vision_bench.settings import RunContext, RunSettings

    ctx = RunContext(RunSettings(models=[], runs=1, warmup=0, seed=0), None, [], "test", "x", *[Path(".")] * 3, {})
    try:
        ctx.undeclared = True  # type: ignore[attr-defined]
    except AttributeError:
        pass
    else:
        raise AssertionError("RunContext accepted an undeclared attribute")


def test_the_user_file_holds_settings_models_and_registry_only():
    tree = ast.parse((ROOT / "unified_benchmark.py").read_text())
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions == ["main"]
    assert all(c.name.endswith("Benchmark") for c in classes)
    assert classes[0].lineno <= 150, "the first model class should be near the top of the file"


def test_importing_the_tool_imports_no_heavy_library():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import unified_benchmark; "
        "heavy = [m for m in ('torch', 'transformers', 'ultralytics', 'matplotlib', 'cv2') if m in sys.modules]; "
        "print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_script_and_module_run_from_another_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    as_script = subprocess.run(
        [sys.executable, str(ROOT / "unified_benchmark.py"), "--list-models"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    as_module = subprocess.run(
        [sys.executable, "-m", "unified_benchmark", "--list-models"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for proc in (as_script, as_module):
        assert proc.returncode == 0, proc.stderr
        assert "yolo11n-detect" in proc.stdout and "depthpro" in proc.stdout


def test_compare_with_a_malformed_file_exits_2_in_one_line_when_run_as_a_script(tmp_path):
    """The import loop of a split where the reports import the main file: run as a script, its
    UsageError was a second class and escaped main() with a traceback and exit 1."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"schema": "unified-benchmark/3", "models": []}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "unified_benchmark.py"),
            "--compare",
            str(good),
            str(bad),
            "--output-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[ERROR] --compare:") and "bad.json" in lines[0]


def test_a_model_class_of_the_script_runs_in_a_worker_and_its_failure_is_recorded(tmp_path):
    """Run as a script, the model classes live in __main__: the worker, forked from the server,
    must still find them; a failure inside one (here: no weight file offline) is its failed record."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "unified_benchmark.py"),
            "--models",
            "yolo11n-detect",
            "--weights",
            "pretrained",
            "--models-dir",
            str(tmp_path / "no_weights"),
            "--output-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(next((tmp_path / "results").glob("benchmark_results_*.json")).read_text())
    [record] = data["models"]
    assert record["status"] == "failed" and record["error"]["type"] == "WeightsError"
    assert record["error"]["phase"] == "load"
    assert record["worker"]["pid"] and record["worker"]["exit_code"] == 0  # the worker ran it and reported
    assert "YOLO_OFFLINE=1 forbids the download" in record["error"]["message"]


def imports_from_the_package(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every `from vision_bench... import name` in a file, also inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vision_bench":
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def test_every_name_the_benchmarks_import_from_the_package_exists():
    """The benchmarks import the package's internals, often inside functions, where a rename would only
    show the next time someone spends twenty minutes running them."""
    import importlib

    checked, missing = 0, []
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        for line, module, name in imports_from_the_package(script):
            checked += 1
            if not hasattr(importlib.import_module(module), name):
                missing.append(f"benchmarks/{script.name}:{line}: {module}.{name}")
    assert checked > 20, "the scan found too few imports: has the benchmarks folder moved?"
    assert not missing, "names the benchmarks import that the package no longer has:\n" + "\n".join(missing)


# Where a record's JSON keys may be read and written by name: the records and the results file.
SERIALISATION_MODULES = ("vision_bench/records/", "vision_bench/reports/results_file.py")
# At most this many string-key accesses elsewhere (issue 29: at most 150; 1,678 before it). None of
# the 56 left reads a record of ours: transformers' and ultralytics' outputs, the model contract's
# output dicts (postprocess, summarize_prediction), os.environ, /proc fields, a module's __dict__, the
# report files' paths by format, phase seconds by phase name. Raise it only for such a value.
STRING_KEY_CEILING = 56


def string_key_accesses(path: Path) -> list[tuple[int, str]]:
    """(line, key) of each `x["key"]`, `x.get("key")`, `x.setdefault("key")`, `x.pop("key")` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]
            is_lookup = node.func.attr in ("get", "setdefault", "pop") and isinstance(first, ast.Constant)
            key = first.value if is_lookup else None
        else:
            continue
        if isinstance(key, str):
            found.append((node.lineno, key))
    return found


def test_records_are_read_by_attribute_outside_the_serialisation_modules():
    counts = {
        str(path.relative_to(ROOT)): len(string_key_accesses(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if not str(path.relative_to(ROOT)).startswith(SERIALISATION_MODULES)
    }
    total = sum(counts.values())
    worst = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    assert total <= STRING_KEY_CEILING, f"{total} string-key accesses outside {SERIALISATION_MODULES}; most in {worst}"


def test_the_string_key_counter_counts_subscripts_and_lookups_but_not_attributes(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'a = d["k"]\nb = d.get("k", 1)\nd.setdefault("k", [])\nd.pop("k")\nc = d[0]\ne = r.k\nf = d.get(k)\n'
    )
    assert [key for _, key in string_key_accesses(sample)] == ["k", "k", "k", "k"]


if __name__ == "__main__":
    for module, targets in sorted(import_graph().items()):
        print(f"{module} -> {', '.join(sorted(targets)) or '(nothing of this project)'}")
    print("cycle:", find_cycle(import_graph()))
    print("\nfolders:")
    for folder, targets in sorted(folder_graph().items()):
        print(f"{folder} -> {', '.join(sorted(targets)) or '(nothing)'}")
