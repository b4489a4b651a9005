"""The command line's manners that are not options: the version line, where the manuals are (the end of
--help), and a quiet end when the reader closes the pipe early (`--list-models | head -3`)."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable

from . import __version__
from .reports.results_file import RESULTS_SCHEMA

VERSION_TEXT = f"%(prog)s {__version__} (results schema {RESULTS_SCHEMA})"  # argparse fills in %(prog)s
# Each capability's manual is a page of docs/ (README.md links them all); --help ends with where they are.
DOCS_EPILOG = (
    " Manuals in docs/: options.md (every option), reading-the-report.md, variants.md (--variants), openvino-and-int8.md, "
    "divergence.md (--divergence), sweeps.md (--batch-sizes, --input-sizes, --memory-limit), traces.md "
    "(--trace), trustworthy-numbers.md (--precision, --processes, --discard-throttled), "
    "comparing-and-gating.md (--compare, --fail-if-slower), history.md (--history, --label), scaling-out.md (--devices, --shard, --merge, "
    "Slurm), adding-a-model.md, how-it-is-built.md, benchmark-scripts.md."
)
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer killed by SIGPIPE


def quiet_on_closed_pipe(command: Callable[..., int]) -> Callable[..., int]:
    """`command` (returning an exit code) ended quietly when stdout's reader is gone: no traceback, the
    exit code a shell gives a writer killed by SIGPIPE. --help and --version end in SystemExit; their
    output is flushed here too, inside the guard."""

    @functools.wraps(command)
    def guarded(*args, **kwargs) -> int:
        try:
            try:
                return command(*args, **kwargs)
            finally:
                sys.stdout.flush()
        except BrokenPipeError:
            # Python flushes stdout once more at exit; pointed at /dev/null, that flush is quiet too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return int(EXIT_CLOSED_PIPE)

    return guarded
