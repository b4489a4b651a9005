"""Leaf modules whose own error is exactly 0 in a variant by construction, so the divergence pass records
them as 0 (with why) without a shadow call: a shadow call of these would compute what the reference
computed, on the same input, with the same kernel.

Matched by exact class (a subclass may compute something else in its forward). A module with an override
(a planted fault, a module kept in fp32) is always shadow-called.
"""

from __future__ import annotations

# No arithmetic, or arithmetic whose result does not depend on the memory layout or on vectorisation
# (a max, a clamp): exact in every variant.
MOVES_OR_SELECTS = (
    "Identity",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "Flatten",
    "Unflatten",
    "ReLU",
    "ReLU6",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
)
# Calls no operation autocast runs in lower precision (convolutions, matmuls, linear, prelu, attention):
# on the reference's float32 input, autocast leaves its computation in float32, the reference's own.
NOT_LOWERED_BY_AUTOCAST = MOVES_OR_SELECTS + (
    "SiLU",
    "GELU",
    "Hardswish",
    "Hardsigmoid",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "ELU",
    "Mish",
    "Softmax",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "LayerNorm",
    "GroupNorm",
    "AvgPool1d",
    "AvgPool2d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "Upsample",
)


def exact_class(module, names: tuple[str, ...]) -> bool:
    """`module` is an instance of torch.nn's class of one of these names itself, not of a subclass."""
    import torch

    cls = type(module)
    return cls.__name__ in names and getattr(torch.nn, cls.__name__, None) is cls
