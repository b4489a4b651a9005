"""The command line: options and their checks (a table of them, the models' own options among
them), the one RunSettings they make, the run's context, and the dispatch to a run, --compare or
--merge. unified_benchmark.main() calls main() here with its registry and settings. The only module
that sees the argparse namespace."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import EXIT_OK, EXIT_USAGE, Option, UsageError, log, option, process_start_time
from .console import DOCS_EPILOG, VERSION_TEXT, quiet_on_closed_pipe
from .history.options import check_history_options, history_options
from .history.report import history_results
from .images import discover_images
from .measure.environment import configure_threads, system_info
from .measure.source_control import source_states
from .measure.stopping_rule import DEFAULT_MAX_TIME, PRECISION_MAX_RUNS, PRECISION_MIN_RUNS
from .models.base import declared_options
from .records.codec import from_json
from .records.run_config import AllocatorSettings, SystemInfo
from .reports.compare import compare_results
from .reports.merge import merge_results
from .reports.read_back_options import read_back_options
from .run.orchestrator import announce, print_summary, raise_on_signal, run_all
from .run.preparation import parse_devices, prepare_output, resolve_device
from .run.shards import select_shard
from .run.worker_processes import keep_freed_memory, start_worker_server
from .settings import CompareOptions, HistoryOptions, MergeOptions, RunContext, RunSettings
from .sweeps.sweep_plan import parse_memory, parse_sizes
from .variants.registry import VARIANTS, parse_variants


@dataclass(frozen=True)
class RunDefaults:
    """The settings users tune in unified_benchmark.py, as the command line's defaults."""

    runs: int
    warmup: int
    seed: int
    image_dir: Path
    models_dir: Path
    output_dir: Path


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def checked_number(cast, acceptable, what: str):
    """An argparse type: the text as `cast`, refused in one line unless `acceptable`."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if not acceptable(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


positive_int = checked_number(int, lambda v: v >= 1, "a whole number of 1 or more")
non_negative_int = checked_number(int, lambda v: v >= 0, "a whole number of 0 or more")
positive_seconds = checked_number(float, lambda v: math.isfinite(v) and v > 0, "a positive number of seconds")
positive_percent = checked_number(
    float, lambda v: math.isfinite(v) and 0 < v < 100, "a percentage above 0 and below 100"
)


def what_to_run(registry: dict, defaults: RunDefaults) -> list[Option]:
    return [
        option(
            "--models",
            default=",".join(registry),
            help=f"comma-separated model names, in the order to run (default: all {len(registry)}; see --list-models)",
        ),
        option("--list-models", action="store_true", help="print the model names with a description and exit"),
        option(
            "--shard",
            default=None,
            metavar="I/N",
            help="run only shard I of N (0 <= I < N) of the selected models, the shards balanced by each "
            "model's RELATIVE_COST; the results record the shard and the whole plan, and --merge of "
            "the N shards checks that every model is there (one task of a job array: slurm/submit.sh)",
        ),
        option(
            "--images",
            nargs="+",
            metavar="PATH",
            help=f"image files or folders (default: {defaults.image_dir.name}/; if it holds no usable image, "
            "the sample photos bundled with ultralytics)",
        ),
        option(
            "--weights",
            choices=["pretrained", "random"],
            default="pretrained",
            help="pretrained: released weights (downloaded if missing); random: same architecture, "
            "random initialisation, no network (default: pretrained)",
        ),
        option(
            "--models-dir",
            type=Path,
            default=defaults.models_dir,
            help="folder of local weights: YOLO/SAM .pt files and save_pretrained folders named like the hub "
            f"repos, e.g. Depth-Anything-V2-Small-hf (default: {defaults.models_dir})",
        ),
        *(
            option(
                o.flag,
                dest=o.name,
                choices=list(o.choices),
                default=None,
                help=f"{o.help} (default: the model class's {o.default_constant} constant)",
            )
            for o in declared_options(registry.values())
        ),
    ]


def how_many_runs(defaults: RunDefaults) -> list[Option]:
    return [
        option(
            "--runs",
            type=positive_int,
            default=None,
            help=f"timed runs per image, the only runs in the latency statistics (default: {defaults.runs}); "
            "each model first gets one cold-start run and the warm-up rounds",
        ),
        option(
            "--precision",
            type=positive_percent,
            default=None,
            metavar="PCT",
            help="instead of a fixed --runs: after the warm-up, keep running timed rounds over the images "
            "until the 95%% interval of the end-to-end median is within +-PCT%% of it (at least "
            f"{PRECISION_MIN_RUNS} runs), or --max-time, or {PRECISION_MAX_RUNS} runs; the report says "
            "which stopped it and the precision reached. Not with --runs",
        ),
        option(
            "--max-time",
            type=positive_seconds,
            default=None,
            metavar="SECONDS",
            help=f"with --precision: the most seconds of timed runs per model (default: {DEFAULT_MAX_TIME:g}; "
            "shared between its --processes)",
        ),
        option(
            "--processes",
            type=positive_int,
            default=1,
            metavar="K",
            help="run each model in K fresh worker processes one after another and pool their timed runs; "
            "the median's interval then covers the spread between processes, and the report lists each "
            "process's median. Each process loads the model, runs its cold start and warm-up again: "
            "loading K times costs time (the first process alone also runs FLOPs and dissection) "
            "(default: 1)",
        ),
        option(
            "--discard-throttled",
            action="store_true",
            help="leave timed runs the guard flagged (throttled, shared, busy) out of the statistics (kept in the JSON)",
        ),
        option(
            "--busy-limit",
            type=positive_percent,
            metavar="PCT",
            help="a timed run is busy when other processes used over PCT%% of the CPU time (default 10)",
        ),
        option(
            "--warmup",
            type=non_negative_int,
            default=defaults.warmup,
            help="warm-up rounds over all images after the cold start, kept in the JSON but not in the "
            f"statistics, so every input shape is seen before timing (default: {defaults.warmup})",
        ),
    ]


def where_models_run(defaults: RunDefaults) -> list[Option]:
    return [
        option(
            "--isolation",
            choices=["process", "none"],
            default="process",
            help="process: each model in a fresh worker process, so its figures do not depend on the models "
            "before it and a crash takes only that model down; none: all in this process, for "
            "debugging (default: process)",
        ),
        option(
            "--model-timeout",
            type=positive_seconds,
            default=None,
            metavar="SECONDS",
            help="kill a model's worker that runs longer than this and mark it 'timeout' (default: none; "
            "needs --isolation process)",
        ),
        option("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: CUDA if available)"),
        option(
            "--threads",
            type=positive_int,
            default=None,
            help="torch CPU threads for every model (default: torch's choice, the physical cores)",
        ),
        option("--seed", type=int, default=defaults.seed, help=f"seed for every generator (default: {defaults.seed})"),
        option(
            "--no-dissect",
            dest="dissect",
            action="store_false",
            help="record layer statistics but write no PNG/NPY files",
        ),
        option(
            "--keep-going",
            action="store_true",
            help="on a model failure, record it and go on with the next model (default: stop at the first)",
        ),
        option(
            "--devices",
            default=None,
            metavar="DEV1,DEV2",
            help="run models in parallel, one worker per device, never two models on one device "
            "(e.g. cuda:0,cuda:1); one report says where each model ran (default: --device alone)",
        ),
    ]


def what_else_to_measure() -> list[Option]:
    return [
        option(
            "--variants",
            default=None,
            metavar="V1,V2",
            help="also run each model the ways it could be deployed, each timed like the reference and "
            "checked against its outputs (parity): " + ", ".join(VARIANTS) + ". torch-fp32 is the "
            "reference and always runs first; a variant a model or device cannot run is reported "
            "'unsupported' with the reason. ONNX exports are cached under --models-dir/exported/ "
            "(default: torch-fp32 only)",
        ),
        option(
            "--divergence",
            action="store_true",
            help="with --variants: where each variant leaves torch-fp32, layer by layer. On the first image, "
            "every call of every leaf module is compared with the reference's (relative L2 error, "
            "cosine, max abs error, normalised error) twice: propagated (the whole network ran as the "
            "variant) and shadow (the layer alone, fed the reference's input: the error it adds itself). "
            "Names the first layer whose own error passes the model's DIVERGENCE_TOLERANCE, the top 5, "
            "and for bf16/fp16 the smallest set of modules to keep in fp32, re-timed and re-checked. About "
            "3 forward passes a variant; reference outputs spill to a scratch folder beside the results",
        ),
        option(
            "--trace",
            action="store_true",
            help="one more warm pass per model (not timed) under torch.profiler, CPU and on CUDA also CUDA "
            "activities, with ranges named after the pipeline phases and the layer explorer's modules; "
            "written as results/report_<run>/<MODEL>_trace.json.gz (open it in ui.perfetto.dev or "
            "chrome://tracing) and summarised in the reports",
        ),
        option(
            "--trace-stacks",
            action="store_true",
            help="with --trace: record Python call stacks too (a larger trace; default: shapes only)",
        ),
    ]


def sweep_options() -> list[Option]:
    return [
        option(
            "--batch-sizes",
            default=None,
            metavar="1,2,4,...|auto",
            help="also time each model at these batch sizes (the first image repeated) at its nominal "
            "input size, each point with its own warm-up and timed runs: latency per batch, images "
            "per second, peak memory, FLOPs per image; an out-of-memory point is the edge, bisected "
            "to one image; auto: doubling from 1 until out of memory or --sweep-budget",
        ),
        option(
            "--input-sizes",
            default=None,
            metavar="320,480,...|auto",
            help="also time each model at batch 1 at these input sizes (auto: doubling from half the "
            "nominal size); a model that cannot resize (or batch) says so and is swept along the "
            "other dimension only",
        ),
        option(
            "--sweep-budget",
            type=positive_seconds,
            default=None,
            metavar="SECONDS",
            help="stop starting new sweep points for a model after this long (default: no limit)",
        ),
        option(
            "--memory-limit",
            default=None,
            metavar="SIZE",
            help="cap each model's worker at SIZE (e.g. 3GB): on the CPU by RLIMIT_DATA, read against "
            "the resident set; on CUDA as the allocator's share of the device. A sweep point past "
            "it is an out-of-memory point, not a failed model; the memory model predicts the "
            "largest batch under it (default: none; the prediction uses the device's memory)",
        ),
    ]


def output_options(defaults: RunDefaults) -> list[Option]:
    return [
        option(
            "--output-dir",
            type=Path,
            default=defaults.output_dir,
            help="folder that receives results/ and viz/ (default: the script's folder)",
        )
    ]


def build_parser(registry: dict, defaults: RunDefaults) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="unified_benchmark.py",
        description="Benchmark vision models one after another on every test image: latency (cold start and warm "
        "statistics), memory, parameters, FLOPs, and a dissection of every layer call. Writes "
        "results/benchmark_{results.json,summary.csv,report.md} and viz/<run id>/<model>/.",
        epilog="Without network: --weights random builds the released architectures with random weights. "
        "Exit codes: 0 done, 1 a model failed (--compare: a model slower than --fail-if-slower allows, or "
        "one that completed in base did not in new; --history: a newest step beyond it), 2 bad input "
        "(--compare/--merge/--history: a file that cannot be read or is not valid), 130 interrupted (Ctrl-C), "
        "143 terminated." + DOCS_EPILOG,
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    groups = {
        "what to run": what_to_run(registry, defaults),
        "how to measure": how_many_runs(defaults) + where_models_run(defaults) + what_else_to_measure(),
        "how cost grows (sweeps, after each model's own pass)": sweep_options(),
        "where to write": output_options(defaults),
        "read results back (no model runs)": read_back_options(),
        "history of runs": history_options(),
    }
    for title, options in groups.items():
        group = parser.add_argument_group(title)
        for flags, kwargs in options:
            group.add_argument(*flags, **kwargs)
    return parser


def check_read_back(args) -> None:
    """The options of --compare and --merge, and that neither comes with a run's --shard."""
    check_history_options(args.history, args.order, args.compare, args.merge)
    if args.fail_if_slower is not None and (
        not (args.compare or args.history) or not math.isfinite(args.fail_if_slower) or args.fail_if_slower < 0
    ):
        raise UsageError("--fail-if-slower PCT needs --compare or --history and a percentage of 0 or more")
    if args.allow_missing and not (args.compare or args.history):
        raise UsageError("--allow-missing needs --compare or --history")
    if args.prefer and not args.merge:
        raise UsageError("--prefer needs --merge")
    if args.shard_logs and not args.merge:
        raise UsageError("--shard-logs needs --merge")
    if args.shard and (args.compare or args.merge or args.history):
        raise UsageError("--shard runs a share of the models: not with --compare or --merge")


def check_sampling(args, defaults: RunDefaults) -> tuple[int, float]:
    """--runs against --precision, --max-time and --processes; returns (runs, max_time) with their defaults."""
    if args.precision is not None and args.runs is not None:
        raise UsageError("--runs N is a fixed count and --precision PCT runs until the interval is tight: give one")
    if args.max_time is not None and args.precision is None:
        raise UsageError("--max-time caps --precision's runs: it needs --precision")
    if args.processes > 1 and (args.isolation == "none" or args.devices):
        raise UsageError(
            "--processes K runs a model in K worker processes one after another: it needs --isolation "
            "process and no --devices"
        )
    return (
        defaults.runs if args.runs is None else args.runs,
        DEFAULT_MAX_TIME if args.max_time is None else args.max_time,
    )


def check_sweep(args) -> tuple:
    """--batch-sizes, --input-sizes, --memory-limit and --sweep-budget, parsed."""
    batch_sizes = parse_sizes(args.batch_sizes, "--batch-sizes")
    input_sizes = parse_sizes(args.input_sizes, "--input-sizes")
    memory = parse_memory(args.memory_limit) if args.memory_limit else None
    if args.sweep_budget and not (batch_sizes or input_sizes):
        raise UsageError("--sweep-budget limits a sweep: it needs --batch-sizes or --input-sizes")
    return batch_sizes, input_sizes, memory


def check_passes(args) -> list[str]:
    """--variants, --divergence, --trace-stacks and --model-timeout; returns the variants."""
    variants = parse_variants(args.variants)
    if args.divergence and len(variants) < 2:
        raise UsageError(
            "--divergence compares variants with torch-fp32: it needs --variants with at least one "
            "other variant (e.g. --variants torch-bf16)"
        )
    return variants


def start_processes(args) -> tuple[int, AllocatorSettings | None]:
    """The worker processes' fork server (--isolation process) or this process's allocator, and the
    torch thread count; returns (threads, allocator: None when the workers set their own)."""
    if args.trace_stacks and not args.trace:
        raise UsageError("--trace-stacks adds stacks to the trace: it needs --trace")
    if args.model_timeout and args.isolation == "none":
        raise UsageError("--model-timeout needs --isolation process: a model in this process cannot be stopped")
    if args.isolation != "process":
        return configure_threads(args.threads), keep_freed_memory()
    # First: the server's imports (5-6 s, the largest part of the tool's overhead) then overlap the
    # rest of the start-up here, this process's own torch import included.
    start_worker_server()
    import torch  # the count torch would choose; the workers pin it (they import ultralytics)

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)  # so that the system section states the run's count
    return threads, None


def check_devices(args) -> list:
    """--devices, resolved (empty without it)."""
    if not args.devices:
        return []
    if args.isolation == "none":
        raise UsageError("--devices runs one worker process per device: it needs --isolation process")
    if args.device != "auto":
        raise UsageError("--device and --devices: give one or the other")
    return parse_devices(args.devices)


def settings_from_options(args, defaults: RunDefaults, registry: dict) -> RunSettings:
    """The run's settings from the parsed options and the script's defaults, checked. Starts the
    worker processes' fork server (its imports overlap the rest of the start-up)."""
    models = parse_models(args.models, registry)
    shard = None
    if args.shard:
        models, shard = select_shard(models, args.shard)
    variants = check_passes(args)
    runs, max_time = check_sampling(args, defaults)
    batch_sizes, input_sizes, memory = check_sweep(args)
    threads, allocator = start_processes(args)
    return RunSettings(
        models=models,
        runs=runs,
        warmup=args.warmup,
        seed=args.seed,
        weights=args.weights,
        models_dir=args.models_dir.expanduser(),
        model_options={o.name: getattr(args, o.name) for o in declared_options(registry.values())},
        precision=args.precision,
        max_time=max_time,
        processes=args.processes,
        discard_throttled=args.discard_throttled,
        busy_limit_pct=args.busy_limit,
        isolation=args.isolation,
        model_timeout=args.model_timeout,
        threads=threads,
        allocator=allocator,
        dissect=args.dissect,
        keep_going=args.keep_going,
        devices=check_devices(args),
        variants=variants,
        divergence=args.divergence,
        trace=args.trace,
        trace_stacks=args.trace_stacks,
        batch_sizes=batch_sizes,
        input_sizes=input_sizes,
        sweep_budget=args.sweep_budget,
        memory_limit=memory,
        shard=shard,
        output_dir=args.output_dir,
        label=args.label,
    )


def parse_models(text: str, registry: dict) -> list[type]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    valid = ", ".join(registry)
    if not names:
        raise UsageError(f"--models: the list is empty; valid names: {valid}")
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise UsageError(f"--models: unknown model {', '.join(repr(n) for n in unknown)}; valid names: {valid}")
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        log("WARNING", f"--models: duplicates removed; each model runs once: {', '.join(unique)}")
    return [registry[n] for n in unique]


def list_models(registry: dict) -> None:
    width = max(len(n) for n in registry)
    for name, cls in registry.items():
        print(f"{name:<{width}}  {cls.DESCRIPTION}")


def new_context(settings: RunSettings, args, defaults: RunDefaults, invoked) -> RunContext:
    """The device, the images and the output folders (created last: nothing for a bad input)."""
    device = settings.devices[0] if settings.devices else resolve_device(args.device)
    images, image_source = discover_images(args.images, defaults.image_dir)
    run_id, (results_dir, viz_dir, assets_dir) = prepare_output(settings.output_dir)
    return RunContext(
        settings,
        device,
        images,
        image_source,
        run_id,
        results_dir,
        viz_dir,
        assets_dir,
        system=from_json(SystemInfo, system_info(device)),
        started=invoked,
        source=source_states(Path.cwd()),
    )


@quiet_on_closed_pipe
def main(registry: dict, defaults: RunDefaults, argv: list[str] | None = None) -> int:
    """The command line: `registry` maps --models names to model classes, `defaults` are the
    settings of unified_benchmark.py. Returns the exit code (no traceback when the pipe closes early)."""
    invoked = process_start_time()
    try:
        args = build_parser(registry, defaults).parse_args(argv)
        if args.list_models:
            list_models(registry)
            return EXIT_OK
        check_read_back(args)
        if args.compare:
            return compare_results(
                args.compare, CompareOptions(args.output_dir, args.fail_if_slower, args.allow_missing)
            )
        if args.history:
            options = HistoryOptions(args.output_dir, args.fail_if_slower, args.order or "start", args.allow_missing)
            return history_results(args.history, options)
        if args.merge:
            return merge_results(args.merge, MergeOptions(args.output_dir, args.prefer, args.shard_logs))
        settings = settings_from_options(args, defaults, registry)
        ctx = new_context(settings, args, defaults, invoked)
    except UsageError as exc:
        print(f"[ERROR] {exc} (see --help)", file=sys.stderr, flush=True)
        return EXIT_USAGE
    previous = {s: signal.signal(s, raise_on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        announce(ctx)
        code = run_all(settings.models, ctx)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print_summary(ctx)
    return code
