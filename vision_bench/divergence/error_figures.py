"""The figures that compare a variant's tensor with the reference's (--divergence): relative L2 error,
cosine, max abs and normalised error, reduced chunk by chunk in reused float32 buffers; and whether a
module's output is its input."""

from __future__ import annotations

import math

import numpy as np

from ..common import first_tensor
from ..records.divergence import ErrorFigures

FIGURE_CHUNK_ELEMENTS = 1 << 20  # the error figures accumulate over chunks of this many values


class FigureBuffers:
    """float32 buffers of FIGURE_CHUNK_ELEMENTS reused by every record of a pass, one set per device: a
    new allocation per chunk (page faults on 4 MB) costs more than the arithmetic (the same finding as
    dissection's)."""

    def __init__(self):
        self.buffers: dict = {}

    def __call__(self, name: str, n: int, device=None):
        import torch

        key = (name, str(device or "cpu"))
        if key not in self.buffers:
            self.buffers[key] = torch.empty(FIGURE_CHUNK_ELEMENTS, dtype=torch.float32, device=device or "cpu")
        return self.buffers[key][:n]


def as_float32_chunk(chunk, buffers: FigureBuffers, name: str, device):
    """`chunk` as float32 on `device`: itself when it is already, else copied into a reused buffer."""
    import torch

    if chunk.dtype == torch.float32 and chunk.device == device:
        return chunk
    out = buffers(name, chunk.numel(), device)
    out.copy_(chunk)
    return out


def error_figures(variant, reference, buffers: FigureBuffers | None = None) -> ErrorFigures:
    """||a-b|| / ||b||, cosine(a, b), max|a-b| and max|a-b| / max|b| of a variant tensor `a` against
    the reference `b` (any dtype, any device; the reference may be a numpy array), computed where `a`
    lives (a GPU's activations are not copied to the host for this). Each chunk of
    FIGURE_CHUNK_ELEMENTS is reduced in float32 (the difference of two float32 values close to each
    other is exact, and torch sums blockwise: ~1e-7 relative, far below any tolerance) and the chunks'
    sums add up in Python's float64. A value finite in the reference and not in the variant makes the
    error infinite (`non_finite` counts them, the cosine is NaN); values not finite in both are left out."""
    return figures_and_reference_sums(variant, reference, buffers)[0]


def figures_and_reference_sums(
    variant, reference, buffers: FigureBuffers | None = None, known: tuple[float, float] | None = None
) -> tuple[ErrorFigures, tuple[float, float] | None]:
    """error_figures, and the reference's sum of squares and max |b|, which a later comparison with the same
    reference can pass back as `known` (two of the six reductions per chunk skipped). They are returned only
    when every value was finite (else None: the figures of a pair leave out what is not finite in both)."""
    import torch

    buffers = buffers or FigureBuffers()
    b = reference if isinstance(reference, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(reference))
    a, b = flat_pair(variant.detach(), b.detach())
    if a.numel() != b.numel():
        return ErrorFigures(shape_mismatch=True), None
    totals = [0.0] * 5  # sum (a-b)^2, sum b^2, sum a^2, max |a-b|, max |b|
    non_finite, masked = 0, False
    for start in range(0, a.numel(), FIGURE_CHUNK_ELEMENTS):
        x = as_float32_chunk(a[start : start + FIGURE_CHUNK_ELEMENTS], buffers, "x", a.device)
        y = as_float32_chunk(b[start : start + FIGURE_CHUNK_ELEMENTS], buffers, "y", a.device)
        d = torch.sub(x, y, out=buffers("d", x.numel(), a.device))
        sums = chunk_sums(x, y, d, with_reference=known is None)
        if not all(map(math.isfinite, sums)):  # rare: the masked path, which needs the reference's sums
            if known is not None:
                return figures_and_reference_sums(variant, reference, buffers)
            masked, (sums, missing) = True, masked_sums(x, y)
            non_finite += missing
        for i in (0, 1, 2):
            totals[i] += sums[i]
        totals[3], totals[4] = max(totals[3], sums[3]), max(totals[4], sums[4])
    if known is not None:
        totals[1], totals[4] = known
    if non_finite:
        return ErrorFigures(math.inf, math.nan, math.inf, math.inf, non_finite=non_finite), None
    dd, bb, aa, max_d, max_b = totals
    norm_d, norm_b, norm_a = math.sqrt(dd), math.sqrt(bb), math.sqrt(aa)
    figures = ErrorFigures(
        relative_l2=norm_d / norm_b if norm_b > 0 else norm_d,
        # 1 - cos from the exact differences: a.b in float32 would lose the digits that matter near 1
        cosine=1 - (dd - (norm_a - norm_b) ** 2) / (2 * norm_a * norm_b)
        if norm_a > 0 and norm_b > 0
        else float(norm_a == norm_b),
        max_abs=max_d,
        normalised=max_d / max_b if max_b > 0 else max_d,
    )
    return figures, None if masked else (bb, max_b)


def chunk_sums(x, y, d, with_reference: bool = True) -> list[float]:
    """[sum d^2, sum y^2, sum x^2, max |d|, max |y|] of one chunk in one read back from the device (the
    reference's two as 0 without `with_reference`). max |v| from one min-max reduction (no |v| tensor
    allocated; 1.8x faster than abs().max() here)."""
    import torch

    if not with_reference:
        dd, aa, low_d, high_d = torch.stack([torch.dot(d, d), torch.dot(x, x), *torch.aminmax(d)]).tolist()
        return [dd, 0.0, aa, max(-low_d, high_d), 0.0]
    reduced = torch.stack([torch.dot(d, d), torch.dot(y, y), torch.dot(x, x), *torch.aminmax(d), *torch.aminmax(y)])
    dd, bb, aa, low_d, high_d, low_y, high_y = reduced.tolist()
    return [dd, bb, aa, max(-low_d, high_d), max(-low_y, high_y)]


def masked_sums(x, y) -> tuple[list[float], int]:
    """chunk_sums over the values finite in both, and how many are finite in `y` and not in `x`."""
    import torch

    fx, fy = torch.isfinite(x), torch.isfinite(y)
    missing = int((fy & ~fx).sum())
    keep = fx & fy
    x, y = x[keep], y[keep]
    if not x.numel():
        return [0.0] * 5, missing
    d = x - y
    return [
        float(torch.dot(d, d)),
        float(torch.dot(y, y)),
        float(torch.dot(x, x)),
        float(d.abs().max()),
        float(y.abs().max()),
    ], missing


def memory_order(tensor) -> list[int] | None:
    """The dimensions in the order the tensor's memory holds them (`tensor.permute(order)` is contiguous:
    (0, 2, 3, 1) for channels-last), or None when no permutation of it is contiguous (a slice)."""
    order = sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d))
    return order if tensor.permute(order).is_contiguous() else None


def flat_pair(a, b):
    """`a` and `b` flattened in one element order: their common memory order when both are laid out alike
    (channels-last outputs against channels-last references: views, no copy), else the logical order (a
    copy of whichever is not contiguous). The figures are sums and maxima: the order changes nothing but
    float32 rounding."""
    order = memory_order(a)
    if order is not None and a.shape == b.shape and b.permute(order).is_contiguous():
        return a.permute(order).reshape(-1), b.permute(order).reshape(-1)
    return a.reshape(-1), b.reshape(-1)


def aliases_input(output, args, kwargs) -> bool:
    """The output shares memory with an input: an Identity, a view, or an in-place module."""
    import torch

    out, _ = first_tensor(output)
    if out is None:
        return False
    ptr = out.untyped_storage().data_ptr()
    return any(
        isinstance(x, torch.Tensor) and x.untyped_storage().data_ptr() == ptr
        for x in list(args) + list(kwargs.values())
    )


def cloned(values):
    import torch

    return type(values)(v.clone() if isinstance(v, torch.Tensor) else v for v in values)
