"""The variants that change only how PyTorch computes the network's floating point: torch-fp32 (the
reference, as loaded) and the half-precision autocast variants torch-fp16 and torch-bf16."""

from __future__ import annotations

from ..common import VariantUnsupported, exception_line
from ..records.variants import VariantDetails
from .base import Variant


class TorchFp32(Variant):
    """The reference every other variant is checked against: the model as loaded."""

    name = "torch-fp32"
    description = "eager PyTorch in float32, the reference every other variant is checked against"


class Autocast(Variant):
    """torch.autocast to `precision` around the network: weights stay float32 and autocast keeps the
    ops it deems sensitive in float32, as mixed precision is deployed."""

    def torch_dtype(self, bench):
        import torch

        dtype = getattr(torch, self.precision)
        check_autocast(bench.device, dtype)
        return dtype

    def prepare(self, bench, images: list) -> VariantDetails:
        bench.autocast_dtype = self.torch_dtype(bench)
        return VariantDetails(autocast_dtype=self.precision)

    def hooked(self, bench):
        from ..divergence.layer_passes import AutocastVariant

        return AutocastVariant(self.name, self.torch_dtype(bench), self.divergence_tolerance(bench))


class TorchFp16(Autocast):
    name = "torch-fp16"
    description = "autocast to float16 around the network (weights stay float32; autocast picks the ops)"
    precision = "float16"


class TorchBf16(Autocast):
    name = "torch-bf16"
    description = "autocast to bfloat16 around the network (weights stay float32; autocast picks the ops)"
    precision = "bfloat16"


def check_autocast(device, dtype) -> None:
    """A convolution and a matmul under autocast: a device without the kernels says so here,
    in one line, instead of failing inside the model."""
    import torch

    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
            x = torch.ones(1, 3, 8, 8, device=device)
            torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3, device=device))
            (x.flatten(1) @ torch.ones(192, 4, device=device)).sum().item()
    except Exception as exc:
        raise VariantUnsupported(
            f"autocast to {dtype} on {device.type} is not available here: {exception_line(exc)}"
        ) from exc
