"""The variant interface (--variants): what one way of deploying a model is, in one class.

A variant has a name (its --variants name and its JSON `variant`), a one-line description, how it
turns a freshly loaded model into itself (`prepare`), the parity limits its outputs are judged by, and
how the --divergence passes hook it (`hooked`: a divergence.layer_passes.HookedVariant, or
VariantUnsupported saying why not). Each variant is a subclass in a module of its own; the registry
(variants.registry) lists them. Heavy libraries are imported inside the methods only.
"""

from __future__ import annotations

from ..common import VariantUnsupported
from ..records.variants import VariantDetails


class Variant:
    """One way of running a model. Subclasses set the class constants and override what differs."""

    name = ""  # --variants name and JSON key; unique in the registry
    description = ""  # one line: the variants table, the log and --help
    # The dtype whose limits apply: "float32" for variants that compute in fp32 (parity by
    # PARITY_TOLERANCE), "float16"/"bfloat16" for half precision (HALF_PRECISION_TOLERANCE);
    # it also picks the model's DIVERGENCE_TOLERANCE entry.
    precision = "float32"

    @property
    def half_precision(self) -> bool:
        """The one rule for half precision: the looser parity limits, and --divergence's fp32 sets."""
        return self.precision != "float32"

    def prepare(self, bench, images: list) -> VariantDetails:
        """Turn a freshly loaded model into this variant; returns what the report shows about it
        (JSON `details`; a variant of several merges theirs with `|`). `images`: [(path, PIL image)]
        the variant will run on. Raises VariantUnsupported when this model or device cannot run it."""
        return VariantDetails()

    def limits(self, bench) -> dict:
        """The parity limits of this variant's outputs: the model's class constants."""
        return bench.HALF_PRECISION_TOLERANCE if self.half_precision else bench.PARITY_TOLERANCE

    @property
    def limits_label(self) -> str:
        """Which limits applied, as the JSON's parity `tolerance` says it."""
        return "half precision" if self.half_precision else "fp32"

    def divergence_tolerance(self, bench) -> float:
        return bench.DIVERGENCE_TOLERANCE[self.precision]

    def hooked(self, bench):
        """The divergence passes' view of this variant (a HookedVariant), or VariantUnsupported why not."""
        raise VariantUnsupported(f"{self.name}: no divergence pass for it")
