"""Who used the CPU during the timed runs. The load average cannot say: it counts the tool's own
threads (torch runs one per core), so on any machine where torch uses every core it passes the core
count by itself. Instead: the whole machine's CPU time from /proc/stat, less the CPU time of the
tool's own processes (the worker with all its threads, the fork server, the main process), is what
every other process used, as a share of the CPU time the machine had (its CPUs x the wall time).
The busiest other processes are named from every /proc/<pid>/stat, read only when the machine
looked busy (that reading costs about a millisecond per hundred processes)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..records.measurement import BusyProcess, CpuReading

PROC = Path("/proc")
TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)  # /proc's unit of CPU time
BUSY_LIMIT = 0.10  # a run is busy when other processes used more than this share of the machine's CPU time
MIN_SPAN_S = 0.5  # runs are judged together until they last this long: /proc/stat counts 10 ms ticks
BUSIEST_NAMED = 3  # other processes named when runs were busy
NAMED_FROM = 0.01  # ... those with at least this share
COMMAND_CHARS = 60


def stat_fields(data: bytes) -> list[bytes]:
    """A /proc/<pid>/stat line's fields after the command (which may hold spaces and parentheses):
    [0] the state, [1] the parent pid, [11] utime, [12] stime (in ticks)."""
    return data[data.rindex(b")") + 2 :].split()


def process_cpu_s(data: bytes) -> float:
    """A process's CPU time (all its threads, user and system) from its /proc/<pid>/stat line."""
    fields = stat_fields(data)
    return (int(fields[11]) + int(fields[12])) * TICK_S


def machine_times(data: bytes) -> tuple[float, float, float]:
    """(capacity, busy, steal) seconds over all CPUs from /proc/stat's first line: capacity is every
    field but guest and guest_nice (the kernel already counts them in user and nice), busy is the
    capacity less idle and iowait."""
    fields = [int(v) for v in data.split(b"\n", 1)[0].split()[1:9]]
    fields += [0] * (8 - len(fields))
    capacity = sum(fields)
    return capacity * TICK_S, (capacity - fields[3] - fields[4]) * TICK_S, fields[7] * TICK_S


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # the process is gone, or /proc is not there
        return None


def own_processes(proc: Path = PROC) -> list[int]:
    """The tool's own processes, this one first: in a worker, also its ancestors up to the process
    that started it (the fork server, then the run's main process); elsewhere this process alone."""
    import multiprocessing

    me = os.getpid()
    starter = multiprocessing.parent_process()
    if starter is None or starter.pid is None:
        return [me]
    pids, pid = [me], me
    for _ in range(4):  # worker -> fork server -> main: a longer chain is not ours
        data = read_bytes(proc / str(pid) / "stat")
        if not data:
            break
        pid = int(stat_fields(data)[1])
        if pid <= 1:
            break
        pids.append(pid)
        if pid == starter.pid:
            return pids
    return [me, os.getppid()]


class CpuAccount:
    """Reads the machine's and the tool's own CPU time at every sample, cheaply: /proc/stat and the
    other own processes' stat files are kept open and re-read from their start; this process's own
    time (every thread) comes from its CPU clock, to the nanosecond. `own_pids` and `proc` replace
    the real ones in tests (then every own process is read from its stat file)."""

    def __init__(
        self,
        proc: Path = PROC,
        own_pids: list[int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        limit: float = BUSY_LIMIT,
    ):
        self.proc, self.clock, self.limit = proc, clock, limit
        self.self_cpu: Callable[[], float] | None = time.process_time if own_pids is None else None
        self.own_pids = own_pids if own_pids is not None else own_processes(proc)
        self.cpus = sum(
            line[:3] == b"cpu" and line[3:4].isdigit() for line in (read_bytes(proc / "stat") or b"").split(b"\n")
        )
        self.stat_fd = self.open(proc / "stat")
        read_by_file = self.own_pids if self.self_cpu is None else self.own_pids[1:]
        self.own_fds = {pid: fd for pid in read_by_file if (fd := self.open(proc / str(pid) / "stat")) is not None}

    @staticmethod
    def open(path: Path) -> int | None:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None

    def read(self) -> CpuReading | None:
        """The counters now; None without /proc/stat."""
        if self.stat_fd is None:
            return None
        try:
            capacity, busy, steal = machine_times(os.pread(self.stat_fd, 4096, 0))
        except (OSError, ValueError):
            return None
        own = self.self_cpu() if self.self_cpu else 0.0
        for pid, fd in list(self.own_fds.items()):
            try:
                own += process_cpu_s(os.pread(fd, 4096, 0))
            except (OSError, ValueError, IndexError):  # it ended: its time stops counting
                os.close(self.own_fds.pop(pid))
        return CpuReading(wall_s=self.clock(), capacity_s=capacity, busy_s=busy, steal_s=steal, own_s=own)

    def margin(self, before: CpuReading, after: CpuReading) -> float:
        """How far the other-process share can be off from the counters' resolution alone: a tick per
        CPU at each end, against the CPU time between the readings."""
        capacity = after.capacity_s - before.capacity_s
        return 2 * max(self.cpus, 1) * TICK_S / capacity if capacity > 0 else float("inf")

    def busy(self, before: CpuReading, after: CpuReading) -> bool:
        """Other processes used more than the limit (BUSY_LIMIT, or --busy-limit) of the CPU time between
        the readings, beyond the counters' resolution; a limit of 1 never flags."""
        share = after.other_share(before)
        return self.limit < 1 and share is not None and share > self.limit + self.margin(before, after)

    def scan(self) -> tuple[float, dict[int, tuple[str, float]]]:
        """Every process's CPU time now: (when, {pid: (command name, seconds)}). Plain os calls: a
        Path per process would double the cost."""
        times = {}
        root = str(self.proc)
        for name in os.listdir(root):
            if name.isdigit():
                try:
                    fd = os.open(f"{root}/{name}/stat", os.O_RDONLY)
                    try:
                        data = os.read(fd, 1024)
                    finally:
                        os.close(fd)
                    command = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
                    times[int(name)] = (command, process_cpu_s(data))
                except (OSError, ValueError, IndexError):  # gone, or not a process's stat
                    continue
        return self.clock(), times

    def busiest(self, before: tuple[float, dict], after: tuple[float, dict]) -> list[BusyProcess]:
        """The other processes that used the most CPU time between two scans, as shares of the
        machine's CPU time over the same interval."""
        capacity_s = max(self.cpus, 1) * (after[0] - before[0])
        if capacity_s <= 0:
            return []
        own = set(self.own_pids)
        used = {
            pid: seconds - before[1].get(pid, ("", 0.0))[1] for pid, (_, seconds) in after[1].items() if pid not in own
        }
        top = sorted(used, key=lambda pid: -used[pid])[:BUSIEST_NAMED]
        return [
            BusyProcess(
                pid=pid, command=self.command(pid, after[1][pid][0]), cpu_share=round(used[pid] / capacity_s, 4)
            )
            for pid in top
            if used[pid] / capacity_s >= NAMED_FROM
        ]

    def command(self, pid: int, name: str) -> str:
        """A process's command line (its program without the path, shortened), or its name when that
        cannot be read."""
        data = read_bytes(self.proc / str(pid) / "cmdline")
        words = data.decode(errors="replace").split("\0") if data else []
        text = " ".join([os.path.basename(words[0]), *words[1:]]).strip() if words else ""  # python, not its path
        return (text[: COMMAND_CHARS - 3] + "...") if len(text) > COMMAND_CHARS else (text or name)

    def close(self) -> None:
        for fd in [self.stat_fd, *self.own_fds.values()]:
            if fd is not None:
                os.close(fd)
        self.stat_fd, self.own_fds = None, {}


def largest_shares(processes: Iterable[BusyProcess]) -> list[BusyProcess] | None:
    """The busiest processes of several readings (several windows, several models), each at its
    largest share; None when there are none."""
    largest: dict[int, BusyProcess] = {}
    for process in processes:
        if process.pid not in largest or process.cpu_share > largest[process.pid].cpu_share:
            largest[process.pid] = process
    return sorted(largest.values(), key=lambda p: -p.cpu_share)[:BUSIEST_NAMED] or None
