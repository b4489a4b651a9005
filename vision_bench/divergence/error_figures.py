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
    import torch

    buffers = buffers or FigureBuffers()
    a = variant.detach().reshape(-1)
    b = reference if isinstance(reference, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(reference))
    b = b.detach().reshape(-1)
    if a.numel() != b.numel():
        return ErrorFigures(shape_mismatch=True)
    dd = bb = aa = 0.0
    max_d = max_b = 0.0
    non_finite = 0
    for start in range(0, a.numel(), FIGURE_CHUNK_ELEMENTS):
        x = as_float32_chunk(a[start : start + FIGURE_CHUNK_ELEMENTS], buffers, "x", a.device)
        y = as_float32_chunk(b[start : start + FIGURE_CHUNK_ELEMENTS], buffers, "y", a.device)
        d = torch.sub(x, y, out=buffers("d", x.numel(), a.device))
        # max |v| from one min-max reduction (no |v| tensor allocated; 1.8x faster than abs().max() here)
        reduced = torch.stack([torch.dot(d, d), torch.dot(y, y), torch.dot(x, x), *torch.aminmax(d), *torch.aminmax(y)])
        dd_x, bb_x, aa_x, low_d, high_d, low_y, high_y = reduced.tolist()  # one read back from the device
        sums = [dd_x, bb_x, aa_x, max(-low_d, high_d), max(-low_y, high_y)]
        if not all(map(math.isfinite, sums)):  # rare: the masked path
            fx, fy = torch.isfinite(x), torch.isfinite(y)
            non_finite += int((fy & ~fx).sum())
            keep = fx & fy
            x, y = x[keep], y[keep]
            if not x.numel():
                continue
            d = x - y
            sums = [
                float(torch.dot(d, d)),
                float(torch.dot(y, y)),
                float(torch.dot(x, x)),
                float(d.abs().max()),
                float(y.abs().max()),
            ]
        dd, bb, aa = dd + sums[0], bb + sums[1], aa + sums[2]
        max_d, max_b = max(max_d, sums[3]), max(max_b, sums[4])
    if non_finite:
        return ErrorFigures(math.inf, math.nan, math.inf, math.inf, non_finite=non_finite)
    norm_d, norm_b, norm_a = math.sqrt(dd), math.sqrt(bb), math.sqrt(aa)
    return ErrorFigures(
        relative_l2=norm_d / norm_b if norm_b > 0 else norm_d,
        # 1 - cos from the exact differences: a.b in float32 would lose the digits that matter near 1
        cosine=1 - (dd - (norm_a - norm_b) ** 2) / (2 * norm_a * norm_b)
        if norm_a > 0 and norm_b > 0
        else float(norm_a == norm_b),
        max_abs=max_d,
        normalised=max_d / max_b if max_b > 0 else max_d,
    )


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
