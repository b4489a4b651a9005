"""The registry of deploy-time variants (--variants): every variant class, listed once, by name.

A variant is one module under variants/ with a subclass of variants.base.Variant; adding one is that
module plus one line in VARIANT_CLASSES below. Everything that needs a variant by name (parsing
--variants, preparing a loaded model, its parity limits, the --divergence hook) looks it up here.
The variants' own pass (load, prepare, cold start, warm-up, timed runs, parity) is variant_pass.
"""

from __future__ import annotations

from ..common import UsageError
from ..records.variants import VariantDetails
from .base import Variant
from .channels_last import TorchChannelsLast
from .compile import TorchCompile
from .onnxruntime import OnnxRuntime
from .onnxruntime_int8 import OnnxRuntimeInt8
from .openvino import OpenVino, OpenVinoBf16, OpenVinoInt8
from .torch_precision import TorchBf16, TorchFp16, TorchFp32

VARIANT_CLASSES: list[type[Variant]] = [
    TorchFp32,
    TorchFp16,
    TorchBf16,
    TorchChannelsLast,
    TorchCompile,
    OnnxRuntime,
    OpenVino,
    OpenVinoBf16,
    OpenVinoInt8,
    OnnxRuntimeInt8,
]
VARIANTS: dict[str, Variant] = {cls.name: cls() for cls in VARIANT_CLASSES}  # --variants name -> variant
REFERENCE_VARIANT = TorchFp32.name


def register(variant: Variant) -> Variant:
    """Add a variant (an instance of a Variant subclass) under its name, e.g. a plugin's or a test's."""
    if not variant.name or variant.name in VARIANTS:
        raise ValueError(f"a variant needs a name of its own: {variant.name!r}")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}") from None


def parse_variants(text: str | None) -> list[str]:
    """--variants: known names, each once, the reference first (added when missing)."""
    if not text:
        return [REFERENCE_VARIANT]
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise UsageError(
            f"--variants: unknown variant {', '.join(map(repr, unknown)) or '(empty list)'}; "
            f"valid: {', '.join(VARIANTS)}"
        )
    return [REFERENCE_VARIANT] + [n for n in names if n != REFERENCE_VARIANT]


def prepare_variant(bench, variant: str, images: list) -> VariantDetails:
    """Turn a freshly loaded model into `variant`; returns what the report shows about it. Raises
    VariantUnsupported when this model or device cannot run it."""
    return get_variant(variant).prepare(bench, images)
