"""The machine as the report states it: library versions, device, numeric settings, the CPU by name
with its cores and the instruction sets the variants depend on, and the torch thread count pinned for
every model."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The instruction sets that decide what a variant can do on a CPU: bf16 and fp16 kernels (AVX512-BF16,
# AVX512-FP16, AMX), int8 (VNNI, AMX-INT8), the vector width (AVX2, AVX-512); on Arm, their counterparts.
# torch-bf16 ran 8-9x slower than fp32 on a CPU without bf16 kernels and 2.17x faster on one with AMX.
X86_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_fp16",
    "amx_int8",
)
ARM_FEATURES = ("asimd", "sve", "sve2", "bf16", "i8mm")
CPU_FEATURES = X86_FEATURES + ARM_FEATURES


def configure_threads(requested: int | None) -> int:
    """Pin torch's CPU thread count for the whole run and keep ultralytics from changing it.

    Importing ultralytics sets OMP_NUM_THREADS=1 when it is unset (torch then starts with one
    thread), and its CPU device selection calls torch.set_num_threads(cores - 1) on the first
    predict; either would silently slow every model that runs after a YOLO model."""
    import torch  # before ultralytics, so that its OMP_NUM_THREADS default does not apply

    threads = requested or torch.get_num_threads()
    torch.set_num_threads(threads)
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = threads
    return threads


def system_info(device) -> dict:
    from importlib.metadata import version  # not the packages themselves: the parent needs no import

    import torch

    info = {
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "ultralytics": version("ultralytics"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        **cpu_identity(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        **numeric_settings(device),
    }
    return info


def cpu_identity(cpuinfo: str | None = None) -> dict:
    """The CPU by name, its physical cores and hardware threads, and which of CPU_FEATURES it has, from
    /proc/cpuinfo (`cpuinfo`: its text, for tests); each None where the file does not say (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    name: str | None = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    threads = 0
    physical = core = ""
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            threads += 1
        elif key in ("model name", "Model Name", "cpu model") and name is None:
            name = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    return {
        "cpu_model": name,
        "cpu_cores": len(cores) or None,
        "cpu_threads": threads or None,
        "cpu_features": [f for f in CPU_FEATURES if f in flags] if flags else None,
    }


def numeric_settings(device) -> dict:
    """What decides the arithmetic on a GPU. On this torch, convolutions run in TF32 on Ampere
    and newer by default while matmuls run in full fp32. The allow_tf32 flags are read (the
    effective setting, no deprecation warning on torch 2.14); the newer fp32_precision
    attributes say "none" when a setting is inherited."""
    import torch

    cudnn = torch.backends.cudnn
    return {
        "default_dtype": str(torch.get_default_dtype()).replace("torch.", ""),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": cudnn.allow_tf32,
        "cudnn_benchmark": cudnn.benchmark,
        "cudnn_deterministic": cudnn.deterministic,
        "cudnn_version": cudnn.version() if cudnn.is_available() else None,
        "cuda_driver_version": cuda_driver_version() if device.type == "cuda" else None,
    }


def cuda_driver_version() -> str | None:
    """The NVIDIA driver version through NVML (nvidia-ml-py comes with ultralytics); None when
    NVML is missing or fails."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no NVML library, no driver, or an old binding: the report says "n/a"
        return None
