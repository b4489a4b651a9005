"""--merge: one set of reports from result files of model subsets (shards, devices, machines)."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..common import EXIT_FAILED, EXIT_OK, UsageError, log
from ..records.codec import known, to_json
from ..records.model_result import ModelResult
from ..records.run_config import SourceState
from ..records.run_document import MergedFrom, MergedShards, RunDocument, ShardWall
from ..records.statuses import RunStatus
from ..settings import MergeOptions, ReportFolders
from .compare import unique_output
from .report_model import draw_summary_charts
from .results_file import RESULTS_SCHEMA, model_key, phase_totals, read_results
from .shard_merge import mark_array_failures, shard_array
from .write import write_report_files


@dataclass(frozen=True)
class Mixed:
    """Whether the merged files' systems, and their settings, differ."""

    system: bool
    config: bool


def merge_results(paths: list[Path], options: MergeOptions) -> int:
    """--merge A B ...: one set of reports from results run in parts (--models subsets on several
    devices or machines). Each model keeps its runs and statistics; where the parts' systems or
    settings differ, each model carries its own (keys 'system' and 'run_config'). Shards of a job
    array (--shard) are checked for coverage: a selected model that no shard completed is in the
    report as failed, naming its shard and the task's log (--shard-logs). Exit code 1 when the
    merged report is not complete."""
    files = [read_results(p, "--merge") for p in paths]
    array = shard_array(files, paths)
    if len(paths) < 2 and array is None:
        raise UsageError("--merge needs two or more result files (or the shards of one array, --shard)")
    if options.shard_logs and array is None:
        raise UsageError("--shard-logs needs the result files of shards (--shard I/N)")
    chosen = choose_models(files, paths, options)
    first = files[0]
    mixed = Mixed(
        system=any(to_json(d.system) != to_json(first.system) for d in files[1:]),
        config=any(to_json(d.config) != to_json(first.config) for d in files[1:]),
    )
    run_id, stem = unique_output(options.output_dir.expanduser() / "results", "benchmark_results")
    assets = stem.parent / f"report_{run_id}"
    assets.mkdir(exist_ok=True)
    models = [merged_model(r, files[index], Path(paths[index]), mixed, assets) for r, index in chosen.values()]
    problems: list[str] = []
    if array is not None:
        models, problems = mark_array_failures(
            array, {m.cli_name: m for m in models}, known(first.config.weights), options.shard_logs
        )
    complete = {d.status for d in files} == {"complete"} and not problems
    data = merged_document(files, paths, models, run_id, complete)
    if array is not None:
        data.shards = MergedShards(
            count=array.count,
            present=array.present,
            missing=[k for k in range(array.count) if k not in array.present],
            logs_template=options.shard_logs,
        )
    shards = [ShardWall(str(p), known(d.run_id), known(d.total_seconds)) for p, d in zip(paths, files)]
    data.phase_totals = phase_totals(models, data.total_seconds or 0.0, shards=shards)  # the files' walls summed
    viz_dir = Path(known(first.config.viz_dir) or "viz")
    folders = ReportFolders(run_id=run_id, results_dir=stem.parent, assets_dir=assets, viz_dir=viz_dir)
    draw_summary_charts(data, assets)
    written = write_report_files(data, folders)
    log(
        "INFO",
        f"Merged {len(models)} model(s) from {len(files)} file(s)"
        + ("; the parts ran on different systems, each model keeps its own" if mixed.system else ""),
    )
    for problem in problems:
        log("ERROR", f"--merge: {problem}")
    for p in written.values():
        print(f"  - {p}")
    return EXIT_OK if complete else EXIT_FAILED


def choose_models(
    files: list[RunDocument], paths: list[Path], options: MergeOptions
) -> dict[str, tuple[ModelResult, int]]:
    """Each model once, with the index of its file: a model that ran in two files is an error unless
    --prefer last; a 'not run' placeholder gives way to a model that ran."""
    chosen: dict[str, tuple[ModelResult, int]] = {}
    for index, data in enumerate(files):
        for r in data.models:
            key = model_key(r)
            if key in chosen and r.status != "not run" and chosen[key][0].status != "not run":
                if options.prefer != "last":
                    raise UsageError(
                        f"--merge: {r.model} is in both {paths[chosen[key][1]]} and {paths[index]}; "
                        "remove one file or pass --prefer last to keep the later file's"
                    )
                log("WARNING", f"--merge: {r.model} from {paths[index]} replaces the one from {paths[chosen[key][1]]}")
            if key not in chosen or r.status != "not run":
                chosen[key] = (r, index)
    return chosen


def merged_model(r: ModelResult, data: RunDocument, path: Path, mixed: Mixed, assets: Path) -> ModelResult:
    """A model of one file as the merge keeps it: where it came from, its own system and settings
    where the files differ, and the files its reports link to copied along."""
    r = r.replaced(source_file=str(path), source_run_id=known(data.run_id))
    if mixed.system:
        r.system = r.system or data.system
    if mixed.config:
        r.run_config = data.config
    # Files the reports link to, relative to their results folder: the output picture, the trace.
    if r.output_image:
        r.output_image = copied_along(path.parent, r.output_image, assets)
    trace = r.trace
    if trace and trace.file:
        file = trace.file
        r.trace = trace = copy.copy(trace)  # the file read keeps its own path
        trace.file = copied_along(path.parent, file, assets)
    return r


def merged_document(
    files: list[RunDocument], paths: list[Path], models: list[ModelResult], run_id: str, complete: bool
) -> RunDocument:
    """The merged results document: the first file's settings and system, every file's images."""
    first = files[0]
    return RunDocument(
        schema=RESULTS_SCHEMA,
        run_id=run_id,
        status=RunStatus.COMPLETE if complete else RunStatus.INCOMPLETE,
        started=min(known(d.started) or "" for d in files),
        written=datetime.now().isoformat(timespec="seconds"),
        total_seconds=sum(known(d.total_seconds) or 0.0 for d in files),
        command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        config=first.config.replaced(models=[r.cli_name for r in models]),
        system=first.system,
        images=list(dict.fromkeys(p for d in files for p in d.images)),
        models=models,
        merged_from=[
            MergedFrom(str(p), known(d.run_id), known(d.status), known(d.command)) for p, d in zip(paths, files)
        ],
        label=" + ".join(dict.fromkeys(d.label for d in files if d.label)) or None,
        source=merged_source(files),
    )


def merged_source(files: list[RunDocument]) -> list[SourceState] | None:
    """The commits the parts ran from (--history reads them): the first part's, as its settings and
    system are; a warning when another part ran from other commits or another tree state."""
    first = files[0].source
    others = {tuple((s.commit[:7], s.dirty) for s in d.source or []) for d in files[1:]}
    if others - {tuple((s.commit[:7], s.dirty) for s in first or [])}:
        commits = ", ".join(
            dict.fromkeys(s.commit[:7] + (" dirty" if s.dirty else "") for d in files for s in (d.source or [])[:1])
        )
        log(
            "WARNING",
            f"--merge: the parts ran from different commits or tree states ({commits}); the merge records the first's",
        )
    return first


def copied_along(folder: Path, relative: str, assets: Path) -> str:
    """A file a report links to (`relative` to a merged file's results `folder`) copied into the merged
    report's folder: its new path relative to the results folder; the old one when it is missing."""
    import shutil

    source = folder / relative
    if not source.exists():
        return relative
    shutil.copy2(source, assets / source.name)
    return f"{assets.name}/{source.name}"
