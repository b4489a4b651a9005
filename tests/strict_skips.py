"""A pytest plugin: with VISION_BENCH_STRICT_SKIPS=1 (set by .ci/run) a skipped test fails the
run unless its reason is one of ALLOWED_SKIPS, so that a reference that is not installed or a
service that did not start cannot pass CI as a skip. Loaded by conftest.py."""

import os

import pytest

# The only skips CI accepts: tests that cannot apply to the machine they run on.
ALLOWED_SKIPS = (
    "this machine has CUDA",  # CPU-only behaviour, checked where there is no GPU
)
STRICT = "VISION_BENCH_STRICT_SKIPS"
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def unexpected_skips() -> list[tuple[str, str]]:
    return [(node, reason) for node, reason in _skipped if not any(a in reason for a in ALLOWED_SKIPS)]


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get(STRICT) == "1" and unexpected_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if os.environ.get(STRICT) == "1" and unexpected_skips():
        terminalreporter.section(f"skips not allowed ({STRICT}=1)", red=True)
        for node, reason in unexpected_skips():
            terminalreporter.line(f"{node}: {reason}", red=True)
        terminalreporter.line(
            "Install what the test needs (see .ci/run), or add the reason to "
            "tests/strict_skips.py ALLOWED_SKIPS if the test cannot apply to this machine."
        )
