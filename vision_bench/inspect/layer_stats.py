"""A layer output's statistics: min, max, mean, std, zero fraction, NaN and Inf counts, computed
where the tensor lives, in float64, reading the tensor once."""

from __future__ import annotations

import math

STATS_CHUNK_ELEMENTS = 1 << 18  # the statistics' float64 copies are of this many elements (2 MB) at a time


def in_memory_order(x):
    """x with its dimensions permuted into memory order: contiguous when x is dense (channels_last
    included). No statistic depends on the order, and torch reduces a channels_last tensor in
    logical order up to ~30x slower."""
    return x.permute(sorted(range(x.dim()), key=lambda d: (x.stride(d), x.shape[d]), reverse=True))


def memory_chunks(x, limit: int = STATS_CHUNK_ELEMENTS):
    """Views of x of at most `limit` elements each, whatever its strides, split along the
    dimensions outermost in memory."""
    yield from split_outermost(in_memory_order(x), limit)


def split_outermost(x, limit: int):
    if x.numel() <= limit or x.dim() == 0:
        yield x
        return
    d = next(d for d in range(x.dim()) if x.shape[d] > 1)
    step = max(1, limit // (x.numel() // x.shape[d]))
    for part in x.split(step, dim=d):
        yield from split_outermost(part, limit)


def float64_summary(x):
    """(min, max, sum, sum of squared deviations from the mean, non-zero count) of x as float64
    tensors on x's device, from one read of x: each chunk is copied once into a float64 buffer
    allocated once (2 MB, which stays in cache, where the other reductions then run; a new
    allocation per chunk costs more than the arithmetic). The moments are of x shifted by its first
    value, so they are exact for a constant tensor (its std is exactly 0) and lose no precision to
    the mean's size, since the shift lies among the values. min and max propagate NaN; the
    moments are NaN or Inf when a value is not finite."""
    import torch

    flat_size = min(x.numel(), STATS_CHUNK_ELEMENTS)
    buffer = torch.empty(flat_size, dtype=torch.float64, device=x.device)
    shift = x[(0,) * x.dim()].double()  # an element, without the copy reshape(-1) makes of a permuted x
    lows, highs, sums, squares, nonzeros = [], [], [], [], []
    for chunk in memory_chunks(x):
        values = buffer[: chunk.numel()]
        if chunk.is_contiguous():
            values.view(chunk.shape).copy_(chunk)
        else:
            values.copy_(chunk.reshape(-1))
        low, high = torch.aminmax(values)
        lows.append(low)
        highs.append(high)
        nonzeros.append(torch.count_nonzero(values))
        values.sub_(shift)
        sums.append(values.sum())
        squares.append(torch.dot(values, values))
    n = x.numel()
    shifted_sum = torch.stack(sums).sum()
    centred_squares = (torch.stack(squares).sum() - shifted_sum * shifted_sum / n).clamp_min(0)
    low, high = torch.stack(lows).amin(), torch.stack(highs).amax()
    return low, high, shift * n + shifted_sum, centred_squares, torch.stack(nonzeros).sum().double()


def empty_tensor_stats() -> dict:
    """The statistics of a tensor without elements: no figure, and nothing non-finite."""
    return {"min": None, "max": None, "mean": None, "std": None, "zero_fraction": None, "nan_count": 0, "inf_count": 0}


def all_finite_stats(x, n: int) -> dict | None:
    """The statistics of x (n elements) when every value is finite, else None: the float64 summary
    reaches the host in one transfer of five numbers."""
    import torch

    lo_, hi_, total_, squares_, nonzeros_ = torch.stack(float64_summary(x)).tolist()
    # min and max propagate NaN and show Inf, so a finite min and max mean all finite.
    if not (math.isfinite(lo_) and math.isfinite(hi_)):
        return None
    return {
        "min": lo_,
        "max": hi_,
        "mean": min(max(total_ / n, lo_), hi_),
        "std": math.sqrt(squares_ / n),
        "zero_fraction": (n - nonzeros_) / n,
        "nan_count": 0,
        "inf_count": 0,
    }


def masked_stats(x, n: int) -> dict:
    """The statistics of x (n elements) holding NaN or Inf: min, max, mean and std over its finite
    values (None when there is none), the zero fraction over all n, and the NaN and Inf counts."""
    import torch

    finite = torch.isfinite(x)
    finite_count = int(finite.sum())
    nan_count = int(torch.isnan(x).sum()) if finite_count < n else 0
    values = x[finite]
    zeros = int((x == 0).sum())
    summary: tuple[float | None, ...] = (None, None, None, None)
    if values.numel():
        low, high, total, squares, _ = torch.stack(float64_summary(values)).tolist()
        count = values.numel()
        summary = (low, high, min(max(total / count, low), high), math.sqrt(squares / count))
    lo, hi, mean, std = summary
    return {
        "min": lo,
        "max": hi,
        "mean": mean,
        "std": std,
        "zero_fraction": zeros / n,
        "nan_count": nan_count,
        "inf_count": n - finite_count - nan_count,
    }


def tensor_stats(t) -> dict:
    """min, max, mean, std, zero fraction, NaN and Inf counts, computed where the tensor lives
    with a single transfer of five numbers to the host in the common all-finite case; the
    masked path runs only when NaN or Inf is present. Every figure comes from float64 copies
    (float64_summary), so a float16/bfloat16/integer output is converted chunk by chunk, with no
    float32 copy of the whole tensor, and the mean is kept inside [min, max].

    Memory: the all-finite path adds one float64 chunk of STATS_CHUNK_ELEMENTS, whatever the
    tensor's strides (channels_last and permuted outputs are common); the NaN/Inf path masks and
    copies (up to 1.75x the tensor's float32 bytes)."""
    import torch

    x = t.detach()
    if x.is_complex():
        x = x.abs()
    n = x.numel()
    if n == 0:
        return empty_tensor_stats()
    x = in_memory_order(x)
    stats = all_finite_stats(x, n)
    if stats is not None:
        return stats
    return masked_stats(x if x.dtype in (torch.float32, torch.float64) else x.float(), n)
