"""The torch-compile variant: torch.compile with the default inductor backend (the library bases say
which module to compile); compiling falls in the cold start. --divergence cannot compare it."""

from __future__ import annotations

from ..common import VariantUnsupported
from ..records.variants import VariantDetails
from .base import Variant

COMPILE_UNSUPPORTED = (
    "torch.compile fuses the leaf modules into kernels of its own: their outputs never exist in "
    "the compiled graph, so there is no record to compare"
)


class TorchCompile(Variant):
    name = "torch-compile"
    description = "torch.compile, default inductor backend; compiling falls in the cold start"

    def prepare(self, bench, images: list) -> VariantDetails:
        bench.compile_network()
        return VariantDetails(backend="inductor")

    def hooked(self, bench):
        raise VariantUnsupported(COMPILE_UNSUPPORTED)
