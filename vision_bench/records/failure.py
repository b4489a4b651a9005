"""How a model's run ended when it did not complete, and the process that ran it: the error record of
a failed model (`error`: raised in its pass, a worker that died or overran --model-timeout, a shard
that wrote no result) and the worker record (`worker`). Field names are the JSON keys."""

from __future__ import annotations

from dataclasses import dataclass

from .codec import optional


@dataclass
class ErrorRecord:
    """Why a model failed (`error`)."""

    type: str  # the exception's class name, or WorkerDied, Timeout, ShardFailed
    message: str = ""
    phase: str | None = None  # the phase it failed in
    traceback: str | None = optional()  # an unexpected exception's traceback
    output_tail: list[str] | str | None = optional()  # a lost worker's last output lines

    @property
    def text(self) -> str:
        """'Type: message' as the failure table shows it."""
        return (self.type + ": " + self.message).strip(": ")

    @property
    def in_words(self) -> str:
        """' (Type: message)' after a status, or '' without a message."""
        return f" ({self.type}: {self.message})" if self.message else ""


@dataclass
class WorkerRecord:
    """The worker process that ran the model (`worker`)."""

    pid: int | None
    exit_code: int | None = None  # None while it runs; negative: killed by a signal
    signal: str | None = None  # the signal's name when one killed it (SIGKILL, SIGSEGV, ...)
    log: str | None = optional()  # its output, relative to the results folder

    def describe(self) -> str:
        """'pid 1, exit code 0, log ...' (or 'killed by SIGKILL') as the model's facts list it."""
        ended = (
            f"killed by {self.signal}"
            if self.signal
            else ("still running" if self.exit_code is None else f"exit code {self.exit_code}")
        )
        return ", ".join([f"pid {self.pid}", ended] + ([f"log {self.log}"] if self.log else []))
