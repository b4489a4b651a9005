"""Memory figures: the process's true resident peak on the CPU, the allocator's peaks on CUDA,
and returning cached memory after a model."""

from __future__ import annotations

import gc
import threading
import time

from ..common import exception_line
from ..records.measurement import PeakReading, PrivateMemory
from ..records.sweep import MemoryLimit


def proc_status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A size field of /proc/<pid>/status (VmHWM, VmData, ...) in bytes; None where it is not there."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class MemoryTracker:
    """Process memory on CPU (resident set, with a true peak) and allocator figures on CUDA."""

    def __init__(self, device):
        import psutil

        self.device = device
        self.process = psutil.Process()
        self._sampler: threading.Thread | None = None
        self._sampling = False
        self._sampled_peak = 0
        self._hwm_exact = False

    def rss(self) -> int:
        return self.process.memory_info().rss

    def cuda_allocated(self) -> int | None:
        import torch

        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else None

    @staticmethod
    def _read_hwm(pid: int | str = "self") -> int | None:
        """The kernel's high-water mark of a process's resident set (also read by the parent
        for a worker: all that is left of it if the OOM killer ends it)."""
        return proc_status_bytes("VmHWM", pid)

    def reset_peak(self) -> None:
        """Start a new peak window. Linux resets the kernel's high-water mark (exact);
        elsewhere a thread samples the resident set every 5 ms. Safe before a model loads
        (call it first, so that a model failing in load() reports its own peak), and again
        at any later point to start a new window."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.stop_sampling()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm_exact = self._read_hwm() is not None
        except OSError:
            self._hwm_exact = False
        if not self._hwm_exact:
            self._sampled_peak = self.rss()
            self._sampling = True
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        while self._sampling:
            self._sampled_peak = max(self._sampled_peak, self.rss())
            time.sleep(0.005)

    def stop_sampling(self) -> None:
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None

    def peak_reading(self) -> PeakReading:
        """The window's peaks: the resident set's, and on CUDA the allocator's."""
        import torch

        if self._hwm_exact:
            cpu_peak = self._read_hwm()
        else:
            self.stop_sampling()
            cpu_peak = max(self._sampled_peak, self.rss())
        reading = PeakReading(cpu_peak_rss_bytes=cpu_peak)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            reading.cuda_peak_allocated_bytes = torch.cuda.max_memory_allocated(self.device)
            reading.cuda_peak_reserved_bytes = torch.cuda.max_memory_reserved(self.device)
        return reading

    def safe_peak_reading(self) -> PeakReading:
        """peak_reading() for an error path: after a device-side assert or an illegal memory access
        every CUDA call raises again, which must not replace the first error. The CPU figure is
        kept; the CUDA error is returned as text."""
        try:
            return self.peak_reading()
        except Exception as exc:
            cpu_peak = self._read_hwm() if self._hwm_exact else max(self._sampled_peak, self.rss())
            return PeakReading(cpu_peak_rss_bytes=cpu_peak, cuda_error=exception_line(exc))


def private_memory(pid: int | str = "self") -> PrivateMemory | None:
    """A process's private memory (USS: private clean and dirty pages), PSS and resident set from
    /proc/<pid>/smaps_rollup, in bytes; None where the kernel does not provide the file. In a
    worker forked from the server, the resident set counts the server's library pages the worker
    touches; USS counts only what is the worker's own."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
                    fields[parts[0][:-1]] = int(parts[1]) * 1024
    except (OSError, ValueError):
        return None
    if "Rss" not in fields:
        return None
    uss = sum(fields.get(k, 0) for k in ("Private_Clean", "Private_Dirty", "Private_Hugetlb"))
    return PrivateMemory(uss=uss, pss=fields.get("Pss"), rss=fields["Rss"])


def safe_cuda_cleanup(device) -> str | None:
    """Return cached CUDA blocks to the driver; the error as one line instead of raising
    (a sticky CUDA error would otherwise hide the error that caused it). None on success
    and on the CPU."""
    if device.type != "cuda":
        return None
    import torch

    try:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        return None
    except Exception as exc:
        return exception_line(exc)


def free_cached_memory(device) -> str | None:
    """gc, then the CUDA caching allocator's free blocks back to the driver (an error as text)."""
    gc.collect()
    return safe_cuda_cleanup(device)


def return_free_heap() -> None:
    """gc, then glibc's free heap pages back to the kernel (malloc_trim), so that a sweep point's
    resident peak is its own, not what a larger point before it left in the allocator."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def apply_memory_limit(limit: int, device) -> MemoryLimit:
    """--memory-limit for this worker. CUDA: the caching allocator's fraction of the device. CPU:
    RLIMIT_DATA (RLIMIT_AS where the data size is unknown) set to the data size now plus the
    headroom `limit - resident set now`, so that the limit reads in the unit the sweep measures (the
    resident peak): an allocation that would take the worker past it fails (CPU allocator: "can't
    allocate memory"). Set again before every sweep point, as the gap between the two drifts. Memory
    the process holds in its data size but not resident (a trimmed heap) escapes it: the sweep does not
    trim the heap under a limit."""
    import resource

    import torch

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(limit / total, 1.0), device)
        return MemoryLimit(bytes=limit, kind="--memory-limit (CUDA allocator fraction)")
    import psutil

    rss, data = psutil.Process().memory_info().rss, proc_status_bytes("VmData")  # what RLIMIT_DATA limits
    which, base = (
        (resource.RLIMIT_DATA, data) if data is not None else (resource.RLIMIT_AS, psutil.Process().memory_info().vms)
    )
    soft = max(
        base + limit - rss, base
    )  # never below what it holds: a worker already past the limit fails its next allocation
    resource.setrlimit(which, (soft, resource.getrlimit(which)[1]))
    return MemoryLimit(
        bytes=limit,
        kind="--memory-limit (RLIMIT_DATA over the resident set)"
        if data is not None
        else "--memory-limit (RLIMIT_AS over the resident set)",
    )


def memory_limit(limit: int | None, device) -> MemoryLimit:
    """What a sweep's prediction compares with: --memory-limit, else the device's memory."""
    if limit:
        return MemoryLimit(bytes=limit, kind="--memory-limit")
    if device.type == "cuda":
        import torch

        return MemoryLimit(bytes=torch.cuda.get_device_properties(device).total_memory, kind="CUDA device memory")
    import psutil

    return MemoryLimit(bytes=psutil.virtual_memory().total, kind="machine RAM (no --memory-limit)")
