"""--history's command-line options (cli.py adds them as a group) and their checks, on plain values."""

from __future__ import annotations

from pathlib import Path

from ..common import Option, UsageError

ORDERS = ("start", "label", "commit-date")


def history_options() -> list[Option]:
    """(flags, argparse keyword arguments) of each option."""
    return [
        (
            ("--label",),
            dict(
                default=None,
                metavar="TEXT",
                help="a run: what it is (a driver version, a branch), written into its results file; "
                "--history shows it and --order label sorts by it",
            ),
        ),
        (
            ("--history",),
            dict(
                nargs="+",
                type=Path,
                metavar="FILE|DIR",
                help="results files, or folders searched for benchmark_results_*.json: each model's latency "
                "over the runs, the steps in it (change points) and the commits they came with; writes "
                "results/history_<run>.md, .html and .json",
            ),
        ),
        (
            ("--order",),
            dict(
                choices=ORDERS,
                default=None,
                help="with --history: order the runs by start time (default), by --label, or by the "
                "commit date of the folder they ran from",
            ),
        ),
    ]


def check_history_options(history: list | None, order: str | None, compare: list | None, merge: list | None) -> None:
    """--history alone of the read-back modes; --order only with it."""
    if history and (compare or merge):
        raise UsageError("--history, --compare and --merge: one at a time")
    if order and not history:
        raise UsageError("--order sorts --history's runs: it needs --history")
