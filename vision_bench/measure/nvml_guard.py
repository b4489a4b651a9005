"""Every NVML call of the tool, in one small module: a GPU's clocks, temperature, power, throttle
reasons and the other processes on it, read through nvidia-ml-py (`import pynvml`, imported
lazily; a test passes a fake of the library instead). Nothing here touches CUDA."""

from __future__ import annotations

import os

from ..records.measurement import GpuSample

# nvmlClocksThrottleReason* (renamed nvmlClocksEventReason* in newer bindings; the bits are the same).
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that slow a running kernel down (idle, a clock setting or sync boost do not).
SLOWDOWN_REASONS = {
    "sw_power_cap",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
}
NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0


def reason_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


class NvmlGuard:
    """One GPU seen through NVML. `nvml` is the pynvml module (or a fake with its functions);
    `index` the NVML index of the device (or `uuid`, which survives CUDA_VISIBLE_DEVICES)."""

    def __init__(self, index: int = 0, uuid: str | None = None, nvml=None, own_pids: set | None = None):
        if nvml is None:
            import pynvml

            nvml = pynvml
        self.nvml = nvml
        nvml.nvmlInit()
        self.handle = nvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else nvml.nvmlDeviceGetHandleByIndex(index)
        self.own_pids = own_pids or {os.getpid()}

    def _read(self, name: str, *args):
        """One NVML getter; None where the device does not support it (NVMLError)."""
        try:
            return getattr(self.nvml, name)(self.handle, *args)
        except Exception:
            return None

    def _throttle_mask(self):
        for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            if hasattr(self.nvml, name):
                return self._read(name)
        return None

    def sample(self) -> GpuSample:
        mask = self._throttle_mask()
        processes = (self._read("nvmlDeviceGetComputeRunningProcesses") or []) + (
            self._read("nvmlDeviceGetGraphicsRunningProcesses") or []
        )
        power_mw = self._read("nvmlDeviceGetPowerUsage")
        return GpuSample(
            sm_clock_mhz=self._read("nvmlDeviceGetClockInfo", NVML_CLOCK_SM),
            mem_clock_mhz=self._read("nvmlDeviceGetClockInfo", NVML_CLOCK_MEM),
            temperature_c=self._read("nvmlDeviceGetTemperature", NVML_TEMPERATURE_GPU),
            power_w=power_mw / 1000.0 if power_mw is not None else None,
            throttle_reasons=reason_names(mask) if mask is not None else None,
            other_pids=sorted({p.pid for p in processes} - self.own_pids),
        )

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


def throttled(sample: GpuSample) -> bool:
    """A reason that slows a running kernel down."""
    return bool(SLOWDOWN_REASONS & set(sample.throttle_reasons or ()))


def shared(sample: GpuSample) -> bool:
    """Another process on the GPU."""
    return bool(sample.other_pids)
