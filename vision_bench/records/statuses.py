"""What a pass records, as the program's own vocabulary: the statuses, one enum per thing that has
one (a run, a model, a variant or divergence entry, a --divergence fp32-set suggestion, a sweep point,
a parity verdict). Each is a StrEnum whose values are the JSON spellings: a member equals its string,
hashes like it and json.dumps writes it as that string, so the files stay what they were and code
still comparing with a literal keeps working.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A whole run (the results file's `status`; also a merge of result files)."""

    RUNNING = "running"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # a model failed, timed out or did not run
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM


class ModelStatus(StrEnum):
    """One model in a run (a result's `status`)."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    NOT_RUN = "not run"  # selected, never started (the run stopped before it)


class VariantStatus(StrEnum):
    """One variant of a model (`variants[]`), and one --divergence entry (`divergence[]`)."""

    RUNNING = "running"
    COMPLETE = "complete"
    UNSUPPORTED = "unsupported"  # this model or device cannot run it; `reason` says why
    FAILED = "failed"  # an unexpected error; `reason` and `traceback`


class SuggestionStatus(StrEnum):
    """--divergence's set of modules kept in fp32 for a half-precision variant (`suggestion`)."""

    PASSES = "passes"  # a set found, timed like a variant
    NOT_NEEDED = "not needed"  # the plain variant passes parity
    NO_SMALL_SET = "no small set"
    SKIPPED = "skipped"  # the plain variant was not measured
    FAILED = "failed"


class SweepPointStatus(StrEnum):
    """One point of a batch or input-size sweep (`sweep.points[]`)."""

    RUNNING = "running"
    OK = "ok"
    OOM = "oom"  # out of memory (or its worker killed): the edge
    FAILED = "failed"
    SKIPPED = "skipped"  # beyond the out-of-memory edge, or the sweep budget ran out


class ParityVerdict(StrEnum):
    """A variant's outputs against the reference's, per image and overall (`parity.verdict`)."""

    PASS = "pass"
    FAIL = "fail"
