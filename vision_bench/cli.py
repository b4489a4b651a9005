"""The command line: options and their checks, output folders, and the dispatch to a run,
--compare or --merge. unified_benchmark.main() calls main() here with its registry and settings."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from .common import EXIT_OK, EXIT_USAGE, UsageError, get_timestamp, log, process_start_time
from .measure.environment import configure_threads
from .measure.model_pass import RunContext
from .measure.stopping_rule import DEFAULT_MAX_TIME, PRECISION_MAX_RUNS, PRECISION_MIN_RUNS
from .models.images import discover_images
from .reports.compare import compare_results
from .reports.merge import merge_results
from .reports.results_file import report_paths
from .run.orchestrator import raise_on_signal, run_all
from .run.shards import select_shard
from .run.worker_processes import keep_freed_memory, start_worker_server
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


def build_parser(registry: dict, defaults: RunDefaults) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="unified_benchmark.py",
        description="Benchmark vision models one after another on every test image: latency (cold start and warm "
        "statistics), memory, parameters, FLOPs, and a dissection of every layer call. Writes "
        "results/benchmark_{results.json,summary.csv,report.md} and viz/<run id>/<model>/.",
        epilog="Without network: --weights random builds the released architectures with random weights. "
        "Exit codes: 0 done, 1 a model failed (--compare: a model slower than --fail-if-slower allows, or "
        "one that completed in base did not in new), 2 bad input (--compare/--merge: a file that cannot be "
        "read or is not valid), 130 interrupted (Ctrl-C), 143 terminated.",
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--models",
        default=",".join(registry),
        help=f"comma-separated model names, in the order to run (default: all {len(registry)}; see --list-models)",
    )
    what.add_argument("--list-models", action="store_true", help="print the model names with a description and exit")
    what.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (0 <= I < N) of the selected models, the shards balanced by each "
        "model's RELATIVE_COST; the results record the shard and the whole plan, and --merge of "
        "the N shards checks that every model is there (one task of a job array: slurm/submit.sh)",
    )
    what.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help=f"image files or folders (default: {defaults.image_dir.name}/; if it holds no usable image, "
        "the sample photos bundled with ultralytics)",
    )
    what.add_argument(
        "--weights",
        choices=["pretrained", "random"],
        default="pretrained",
        help="pretrained: released weights (downloaded if missing); random: same architecture, "
        "random initialisation, no network (default: pretrained)",
    )
    what.add_argument(
        "--models-dir",
        type=Path,
        default=defaults.models_dir,
        help="folder of local weights: YOLO/SAM .pt files and save_pretrained folders named like the hub "
        f"repos, e.g. Depth-Anything-V2-Small-hf (default: {defaults.models_dir})",
    )
    what.add_argument(
        "--sam-prompt",
        choices=["everything", "box"],
        default=None,
        help="MobileSAM workload: everything (grid of point prompts) or box (one box prompt) "
        "(default: the model class's SAM_PROMPT constant)",
    )
    how = parser.add_argument_group("how to measure")
    how.add_argument(
        "--runs",
        type=positive_int,
        default=None,
        help=f"timed runs per image, the only runs in the latency statistics (default: {defaults.runs}); "
        "each model first gets one cold-start run and the warm-up rounds",
    )
    how.add_argument(
        "--precision",
        type=positive_percent,
        default=None,
        metavar="PCT",
        help="instead of a fixed --runs: after the warm-up, keep running timed rounds over the images "
        "until the 95%% interval of the end-to-end median is within +-PCT%% of it (at least "
        f"{PRECISION_MIN_RUNS} runs), or --max-time, or {PRECISION_MAX_RUNS} runs; the report says "
        "which stopped it and the precision reached. Not with --runs",
    )
    how.add_argument(
        "--max-time",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --precision: the most seconds of timed runs per model (default: {DEFAULT_MAX_TIME:g}; "
        "shared between its --processes)",
    )
    how.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="K",
        help="run each model in K fresh worker processes one after another and pool their timed runs; "
        "the median's interval then covers the spread between processes, and the report lists each "
        "process's median. Each process loads the model, runs its cold start and warm-up again: "
        "loading K times costs time (the first process alone also runs FLOPs and dissection) "
        "(default: 1)",
    )
    how.add_argument(
        "--discard-throttled",
        action="store_true",
        help="leave timed runs the machine-state guard flagged (GPU throttled or shared with another "
        "process, CPU thermal throttling) out of the statistics; they stay in the JSON, marked",
    )
    how.add_argument(
        "--warmup",
        type=non_negative_int,
        default=defaults.warmup,
        help="warm-up rounds over all images after the cold start, kept in the JSON but not in the "
        f"statistics, so every input shape is seen before timing (default: {defaults.warmup})",
    )
    how.add_argument(
        "--isolation",
        choices=["process", "none"],
        default="process",
        help="process: each model in a fresh worker process, so its figures do not depend on the models "
        "before it and a crash takes only that model down; none: all in this process, for "
        "debugging (default: process)",
    )
    how.add_argument(
        "--model-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="kill a model's worker that runs longer than this and mark it 'timeout' (default: none; "
        "needs --isolation process)",
    )
    how.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: CUDA if available)")
    how.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads for every model (default: torch's choice, the physical cores)",
    )
    how.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"seed for every generator (default: {defaults.seed})"
    )
    how.add_argument(
        "--no-dissect", dest="dissect", action="store_false", help="record layer statistics but write no PNG/NPY files"
    )
    how.add_argument(
        "--keep-going",
        action="store_true",
        help="on a model failure, record it and go on with the next model (default: stop at the first)",
    )
    how.add_argument(
        "--devices",
        default=None,
        metavar="DEV1,DEV2",
        help="run models in parallel, one worker per device, never two models on one device "
        "(e.g. cuda:0,cuda:1); one report says where each model ran (default: --device alone)",
    )
    how.add_argument(
        "--variants",
        default=None,
        metavar="V1,V2",
        help="also run each model the ways it could be deployed, each timed like the reference and "
        "checked against its outputs (parity): " + ", ".join(VARIANTS) + ". torch-fp32 is the "
        "reference and always runs first; a variant a model or device cannot run is reported "
        "'unsupported' with the reason. ONNX exports are cached under --models-dir/exported/ "
        "(default: torch-fp32 only)",
    )
    how.add_argument(
        "--divergence",
        action="store_true",
        help="with --variants: where each variant leaves torch-fp32, layer by layer. On the first image, "
        "every call of every leaf module is compared with the reference's (relative L2 error, "
        "cosine, max abs error, normalised error) twice: propagated (the whole network ran as the "
        "variant) and shadow (the layer alone, fed the reference's input: the error it adds itself). "
        "Names the first layer whose own error passes the model's DIVERGENCE_TOLERANCE, the top 5, "
        "and for bf16/fp16 the smallest set of modules to keep in fp32, re-timed and re-checked. About "
        "3 forward passes a variant; reference outputs spill to a scratch folder beside the results",
    )
    how.add_argument(
        "--trace",
        action="store_true",
        help="one more warm pass per model (not timed) under torch.profiler, CPU and on CUDA also CUDA "
        "activities, with ranges named after the pipeline phases and the layer explorer's modules; "
        "written as results/report_<run>/<MODEL>_trace.json.gz (open it in ui.perfetto.dev or "
        "chrome://tracing) and summarised in the reports",
    )
    how.add_argument(
        "--trace-stacks",
        action="store_true",
        help="with --trace: record Python call stacks too (a larger trace; default: shapes only)",
    )
    sweep = parser.add_argument_group("how cost grows (sweeps, after each model's own pass)")
    sweep.add_argument(
        "--batch-sizes",
        default=None,
        metavar="1,2,4,...|auto",
        help="also time each model at these batch sizes (the first image repeated) at its nominal "
        "input size, each point with its own warm-up and timed runs: latency per batch, images "
        "per second, peak memory, FLOPs per image; an out-of-memory point is the edge, bisected "
        "to one image; auto: doubling from 1 until out of memory or --sweep-budget",
    )
    sweep.add_argument(
        "--input-sizes",
        default=None,
        metavar="320,480,...|auto",
        help="also time each model at batch 1 at these input sizes (auto: doubling from half the "
        "nominal size); a model that cannot resize (or batch) says so and is swept along the "
        "other dimension only",
    )
    sweep.add_argument(
        "--sweep-budget",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop starting new sweep points for a model after this long (default: no limit)",
    )
    sweep.add_argument(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="cap each model's worker at SIZE (e.g. 3GB): on the CPU by RLIMIT_DATA, read against "
        "the resident set; on CUDA as the allocator's share of the device. A sweep point past "
        "it is an out-of-memory point, not a failed model; the memory model predicts the "
        "largest batch under it (default: none; the prediction uses the device's memory)",
    )
    out = parser.add_argument_group("where to write")
    out.add_argument(
        "--output-dir",
        type=Path,
        default=defaults.output_dir,
        help="folder that receives results/ and viz/ (default: the script's folder)",
    )
    back = parser.add_argument_group("read results back (no model runs)")
    back.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="BASE.json NEW.json [MORE.json ...]: each later run against the first, with a significance "
        "test per model; writes results/comparison_<run>.md and .html",
    )
    back.add_argument(
        "--fail-if-slower",
        type=float,
        default=None,
        metavar="PCT",
        help="with --compare: exit 1 when a model's slowdown is larger than PCT%% with 95%% confidence "
        "(the lower bound of the interval of its shift is above PCT%%)",
    )
    back.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --compare: a model that completed in base and failed, timed out or is missing in "
        "new is reported, not a failure (by default it makes the comparison exit 1)",
    )
    back.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="A.json B.json ...: one set of reports from runs of model subsets (shards)",
    )
    back.add_argument(
        "--prefer",
        choices=["last"],
        default=None,
        help="with --merge: a model in several files is taken from the last one (default: an error)",
    )
    back.add_argument(
        "--shard-logs",
        default=None,
        metavar="TEMPLATE",
        help="with --merge of shards: the log of shard I's task, {shard} standing for I (e.g. "
        "logs/bench_123_{shard}.log); a model its shard did not complete is marked failed with it",
    )
    return parser


def check_sampling(args, defaults: RunDefaults) -> None:
    """--runs against --precision, --max-time and --processes; fills the defaults."""
    if args.precision is not None and args.runs is not None:
        raise UsageError("--runs N is a fixed count and --precision PCT runs until the interval is tight: give one")
    if args.max_time is not None and args.precision is None:
        raise UsageError("--max-time caps --precision's runs: it needs --precision")
    args.runs = defaults.runs if args.runs is None else args.runs
    args.max_time = DEFAULT_MAX_TIME if args.max_time is None else args.max_time
    if args.processes > 1 and (args.isolation == "none" or args.devices):
        raise UsageError(
            "--processes K runs a model in K worker processes one after another: it needs --isolation "
            "process and no --devices"
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


def resolve_device(text: str):
    import torch

    text = text.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            log("INFO", f"Using CUDA device: {torch.cuda.get_device_name(0)}")
            return torch.device("cuda:0")
        log("WARNING", "CUDA not available, falling back to CPU. Performance will be significantly slower.")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        # The format first, whether or not CUDA is here: only plain ASCII digits without a
        # leading zero (str.isdigit() accepts "٣", and torch rejects "01" later with a traceback).
        index_text = text.partition(":")[2] if ":" in text else "0"
        if not (index_text.isascii() and index_text.isdigit() and (index_text == "0" or index_text[0] != "0")):
            raise UsageError(
                f"--device {text!r}: expected cuda or cuda:N with N a GPU index written in "
                "ASCII digits without leading zeros (cuda:0, cuda:1, ...)"
            )
        index = int(index_text)
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {text}: CUDA is not available on this machine (torch {torch.__version__}); "
                "use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {text}: this machine has {count} GPU(s), indices 0 to {count - 1}")
        return torch.device("cuda", index)
    raise UsageError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")


def parse_devices(text: str) -> list:
    """--devices: each a --device value; a GPU may appear once (two models on one GPU would
    compete for it), the CPU several times (its workers share the cores: timings are meaningless)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--devices: the list is empty; e.g. --devices cuda:0,cuda:1")
    devices = []
    for name in names:
        if name.lower() == "auto":
            raise UsageError("--devices: name each device (cpu, cuda:N); auto is for --device")
        try:
            devices.append(resolve_device(name))
        except UsageError as exc:
            raise UsageError(str(exc).replace("--device ", "--devices: ", 1)) from None
    gpus = [str(d) for d in devices if d.type == "cuda"]
    repeated = sorted({g for g in gpus if gpus.count(g) > 1})
    if repeated:
        raise UsageError(f"--devices: {', '.join(repeated)} listed twice; one model at a time per GPU")
    if sum(d.type == "cpu" for d in devices) > 1:
        log("WARNING", "--devices: several workers on the CPU share its cores; their timings are not meaningful")
    return devices


def prepare_output(output_dir: Path) -> tuple[str, tuple[Path, Path, Path]]:
    """Create results/ and a run folder that no other run shares (mkdir is atomic), and
    prove the folders are writable, all before any model loads."""
    output_dir = output_dir.expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir: {output_dir} is a file, not a folder; choose another path")
    results_dir, viz_root = output_dir / "results", output_dir / "viz"
    try:
        for folder in (results_dir, viz_root):
            if folder.exists() and not folder.is_dir():
                raise UsageError(
                    f"--output-dir: {folder} is a file where a folder is needed; move it or choose another --output-dir"
                )
            folder.mkdir(parents=True, exist_ok=True)
        stamp = get_timestamp()
        for attempt in range(1, 1000):
            run_id = stamp if attempt == 1 else f"{stamp}_{attempt}"
            try:
                (viz_root / run_id).mkdir()
                break
            except FileExistsError:
                continue
        assets = results_dir / f"report_{run_id}"
        assets.mkdir(exist_ok=True)
        probe = results_dir / f".write_test_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except PermissionError as exc:
        raise UsageError(
            f"--output-dir: cannot write to {exc.filename or output_dir} (permission denied); "
            "choose a writable --output-dir"
        ) from None
    except OSError as exc:
        raise UsageError(f"--output-dir: cannot create folders under {output_dir}: {exc.strerror or exc}") from None
    return run_id, (results_dir, viz_root / run_id, assets)


def list_models(registry: dict) -> None:
    width = max(len(n) for n in registry)
    for name, cls in registry.items():
        print(f"{name:<{width}}  {cls.DESCRIPTION}")


def main(registry: dict, defaults: RunDefaults, argv: list[str] | None = None) -> int:
    """The command line: `registry` maps --models names to model classes, `defaults` are the
    settings of unified_benchmark.py. Returns the exit code."""
    invoked = process_start_time()
    try:
        args = build_parser(registry, defaults).parse_args(argv)
        if args.list_models:
            list_models(registry)
            return EXIT_OK
        if args.compare and args.merge:
            raise UsageError("--compare and --merge: one at a time")
        if args.fail_if_slower is not None and (
            not args.compare or not math.isfinite(args.fail_if_slower) or args.fail_if_slower < 0
        ):
            raise UsageError("--fail-if-slower PCT needs --compare and a percentage of 0 or more")
        if args.allow_missing and not args.compare:
            raise UsageError("--allow-missing needs --compare")
        if args.prefer and not args.merge:
            raise UsageError("--prefer needs --merge")
        if args.shard_logs and not args.merge:
            raise UsageError("--shard-logs needs --merge")
        if args.shard and (args.compare or args.merge):
            raise UsageError("--shard runs a share of the models: not with --compare or --merge")
        if args.compare:
            return compare_results(args.compare, args)
        if args.merge:
            return merge_results(args.merge, args)
        args.model_classes = parse_models(args.models, registry)
        args.shard_record = None
        if args.shard:
            args.model_classes, args.shard_record = select_shard(args.model_classes, args.shard)
        args.variants = parse_variants(args.variants)
        if args.divergence and len(args.variants) < 2:
            raise UsageError(
                "--divergence compares variants with torch-fp32: it needs --variants with at least one "
                "other variant (e.g. --variants torch-bf16)"
            )
        check_sampling(args, defaults)
        args.batch_sizes = parse_sizes(args.batch_sizes, "--batch-sizes")
        args.input_sizes = parse_sizes(args.input_sizes, "--input-sizes")
        args.memory_limit = parse_memory(args.memory_limit) if args.memory_limit else None
        if args.sweep_budget and not (args.batch_sizes or args.input_sizes):
            raise UsageError("--sweep-budget limits a sweep: it needs --batch-sizes or --input-sizes")
        if args.trace_stacks and not args.trace:
            raise UsageError("--trace-stacks adds stacks to the trace: it needs --trace")
        args.models_dir = args.models_dir.expanduser()
        if args.model_timeout and args.isolation == "none":
            raise UsageError("--model-timeout needs --isolation process: a model in this process cannot be stopped")
        if args.isolation == "process":
            # First: the server's imports (5-6 s, the largest part of the tool's overhead) then
            # overlap the rest of the start-up here, this process's own torch import included.
            start_worker_server()
            import torch  # the count torch would choose; the workers pin it (they import ultralytics)

            args.threads = args.threads or torch.get_num_threads()
            torch.set_num_threads(args.threads)  # so that the system section states the run's count
        else:
            args.threads = configure_threads(args.threads)
            args.allocator = keep_freed_memory()
        if args.devices:
            if args.isolation == "none":
                raise UsageError("--devices runs one worker process per device: it needs --isolation process")
            if args.device != "auto":
                raise UsageError("--device and --devices: give one or the other")
            args.devices = parse_devices(args.devices)
            device = args.devices[0]
        else:
            device = resolve_device(args.device)
        images, image_source = discover_images(args.images, defaults.image_dir)
        run_id, paths = prepare_output(args.output_dir)  # last: nothing is created for a bad input
    except UsageError as exc:
        print(f"[ERROR] {exc} (see --help)", file=sys.stderr, flush=True)
        return EXIT_USAGE

    ctx = RunContext(args, device, images, image_source, run_id, paths, started=invoked)
    previous = {s: signal.signal(s, raise_on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        log(
            "INFO",
            f"Run {run_id}: {len(args.model_classes)} model(s), {len(images)} image(s), 1 cold-start run, "
            f"{args.warmup} warm-up round(s), "
            + (
                f"timed rounds until +-{args.precision:g}% (at most {args.max_time:g} s)"
                if args.precision
                else f"{args.runs} timed run(s) per image"
            )
            + (f" in each of {args.processes} processes" if args.processes > 1 else "")
            + f", {args.weights} weights, "
            f"device {', '.join(map(str, args.devices)) if args.devices else device}, seed {args.seed}, "
            + ("one worker process per model" if args.isolation == "process" else "all in this process"),
        )
        if args.shard_record:
            shard = args.shard_record
            log(
                "INFO",
                f"Shard {shard['index']}/{shard['count']} of {len(shard['selected'])} selected model(s): "
                f"{', '.join(shard['models'])}",
            )
        log("INFO", f"Images: {', '.join(p.name for p in images)}")
        code = run_all(args.model_classes, ctx)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    paths_written = report_paths(ctx)
    print("=" * 80)
    print(f"BENCHMARK {ctx.status.upper()}")
    print("=" * 80)
    for r in ctx.results:
        print(f"  {r['model']:<22} {r['status']}")
    print("Output files:")
    for p in paths_written.values():
        print(f"  - {p}")
    print(f"Layer folders: {ctx.viz_dir}")
    return code
