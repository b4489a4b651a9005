"""Where the code that ran came from: the git commit of the folder the tool ran from and of the
project that holds the tool (when they differ), whether each tree had uncommitted changes, read once
when a run starts. --history orders runs and names the commits between two of them with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..records.run_config import SourceState

GIT_TIMEOUT_S = 10.0


def git(folder: Path, *arguments: str) -> str | None:
    """One git command's output in `folder`, stripped; None when git or the repository is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *arguments], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_state(folder: Path, role: str) -> SourceState | None:
    """The commit of the repository that holds `folder`, or None outside one. Dirty means tracked
    files changed (untracked files, such as the results a run writes into the folder, do not count)."""
    top = git(folder, "rev-parse", "--show-toplevel")
    head = git(folder, "log", "-1", "--format=%H%x00%cI%x00%s") if top else None
    if not top or not head:
        return None
    commit, committed, subject = head.split("\x00", 2)
    status = git(folder, "status", "--porcelain", "--untracked-files=no")
    return SourceState(
        role=role,
        folder=top,
        commit=commit,
        committed=committed,
        subject=subject,
        branch=git(folder, "rev-parse", "--abbrev-ref", "HEAD"),
        dirty=None if status is None else bool(status),
    )


def source_states(working_folder: Path) -> list[SourceState]:
    """The working folder's repository, then the tool's own when it is another one."""
    tool = Path(__file__).resolve().parents[2]  # the folder of vision_bench/, beside unified_benchmark.py
    states: list[SourceState] = []
    for folder, role in ((working_folder, "working folder"), (tool, "tool")):
        state = source_state(folder, role)
        if state is not None and all(s.folder != state.folder for s in states):
            states.append(state)
    return states
