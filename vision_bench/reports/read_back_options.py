"""--compare's and --merge's command-line options (cli.py adds them as a group), as (flags, argparse
keyword arguments) pairs: the options' text lives beside the reports they make."""

from __future__ import annotations

from pathlib import Path

from ..common import Option, option


def read_back_options() -> list[Option]:
    return [
        option(
            "--compare",
            nargs="+",
            type=Path,
            metavar="JSON",
            help="BASE.json NEW.json [MORE.json ...]: each later run against the first, with a significance "
            "test per model; writes results/comparison_<run>.md and .html",
        ),
        option(
            "--fail-if-slower",
            type=float,
            default=None,
            metavar="PCT",
            help="with --compare (--history: the newest step): exit 1 when a model's slowdown is larger than PCT%% with 95%% confidence "
            "(the lower bound of the interval of its shift is above PCT%%)",
        ),
        option(
            "--allow-missing",
            action="store_true",
            help="with --compare: a model that completed in base and failed, timed out or is missing in "
            "new is reported, not a failure (by default it makes the comparison exit 1); with --history "
            "--fail-if-slower: the same for the newest run against the run before it",
        ),
        option(
            "--merge",
            nargs="+",
            type=Path,
            metavar="JSON",
            help="A.json B.json ...: one set of reports from runs of model subsets (shards)",
        ),
        option(
            "--prefer",
            choices=["last"],
            default=None,
            help="with --merge: a model in several files is taken from the last one (default: an error)",
        ),
        option(
            "--shard-logs",
            default=None,
            metavar="TEMPLATE",
            help="with --merge of shards: the log of shard I's task, {shard} standing for I (e.g. "
            "logs/bench_123_{shard}.log); a model its shard did not complete is marked failed with it",
        ),
    ]
