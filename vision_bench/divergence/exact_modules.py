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


# Operations a container's own code may run (by torch function name, as a TorchFunctionMode sees them) that
# autocast leaves in float32 on float32 inputs: moving, selecting, element-wise arithmetic, norms, pooling,
# resampling. A container whose own operations are all among these computes, in an autocast replay on the
# reference's inputs and its children's reference outputs, the reference's output exactly. Anything not
# listed (a matmul, a linear, an einsum, an attention, an unknown function) means a replay.
NOT_LOWERED_OPERATIONS = frozenset(
    {
        "__get__",  # attribute reads: shape, dtype, device
        "is_inference",
        "_set_grad_enabled",  # a no_grad block
        "arange",  # new tensors of given values
        "meshgrid",
        "new_full",
        "new_zeros",
        "new_ones",
        "zeros",
        "ones",
        "full",
        "zeros_like",
        "ones_like",
        "size",
        "dim",
        "numel",
        "__len__",
        "__iter__",
        "is_floating_point",
        "contiguous",
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "permute",
        "transpose",
        "flatten",
        "unflatten",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "repeat",
        "chunk",
        "split",
        "unbind",
        "narrow",
        "__getitem__",
        "cat",
        "concat",
        "stack",
        "flip",
        "roll",
        "clone",
        "to",
        "float",
        "type_as",
        "detach",
        "add",
        "__add__",
        "__radd__",
        "__iadd__",
        "add_",
        "sub",
        "__sub__",
        "__rsub__",
        "__isub__",
        "mul",
        "__mul__",
        "__rmul__",
        "__imul__",
        "mul_",
        "div",
        "__truediv__",
        "__rtruediv__",
        "__itruediv__",
        "neg",
        "__neg__",
        "pow",
        "__pow__",
        "sqrt",
        "rsqrt",
        "exp",
        "abs",
        "clamp",
        "relu",
        "relu_",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "softmax",
        "hardswish",
        "mean",
        "sum",
        "amax",
        "interpolate",
        "pad",
        "layer_norm",
        "group_norm",
        "batch_norm",
        "normalize",
        "dropout",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "where",
        "masked_fill",
    }
)
