"""The PNG of a layer's feature maps: the first channels of batch element 0 in a grid, each channel
normalised on its own through viridis, written by a small PNG writer of our own."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

deflate_module: ModuleType = zlib
try:  # ISA-L's deflate: the same zlib stream format, ~4x faster than zlib, files about as small
    from isal import isal_zlib

    deflate_module = isal_zlib
except ImportError:  # requirements.txt installs isal; plain zlib writes the same PNGs, slower
    pass

DISSECT_TILE_MIN, DISSECT_TILE_MAX = 64, 256  # pixels per channel tile in a PNG
DISSECT_VECTOR_PIXELS = 256 * 256  # maps up to this size are colour-mapped all channels at once
PNG_DEFLATE_LEVEL = 2  # ISA-L level 2: as fast as 1 here, files 5% smaller; the grids are noise-like
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_COLORMAP_LUT = None


def colormap_lut() -> np.ndarray:
    """viridis as a 256x3 uint8 table: one lookup per pixel, no matplotlib figure per layer."""
    global _COLORMAP_LUT
    if _COLORMAP_LUT is None:
        from matplotlib import colormaps

        _COLORMAP_LUT = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return _COLORMAP_LUT


def colour_indices(ch: np.ndarray) -> np.ndarray:
    """One channel normalised to its own finite min..max as colormap indices 0..255 (NaN/Inf: 0)."""
    lo, hi = float(ch.min()), float(ch.max())
    if math.isfinite(lo) and math.isfinite(hi):  # no NaN/Inf: no mask, no np.where
        norm = (ch - lo) / (hi - lo) if hi > lo else np.zeros_like(ch)
    else:
        finite = np.isfinite(ch)
        lo, hi = (float(ch[finite].min()), float(ch[finite].max())) if finite.any() else (0.0, 0.0)
        norm = np.where(finite, (ch - lo) / (hi - lo), 0.0) if hi > lo else np.zeros_like(ch)
    return (norm * 255).astype(np.uint8)


def colour_indices_all(planes: np.ndarray) -> np.ndarray:
    """colour_indices of every channel at once, same arithmetic (float32, the span rounded from
    float64 as a Python float would be); channels with NaN or Inf take the per-channel path."""
    lo, hi = planes.min(axis=(1, 2)), planes.max(axis=(1, 2))
    finite = np.isfinite(lo) & np.isfinite(hi)
    span = hi.astype(np.float64) - lo.astype(np.float64)
    denominator = np.where(finite & (span > 0), span, 1.0).astype(planes.dtype)
    with np.errstate(invalid="ignore"):
        norm = (planes - np.where(finite, lo, 0).astype(planes.dtype)[:, None, None]) / denominator[:, None, None]
        out = (norm * 255).astype(np.uint8)
    for i in np.flatnonzero(~finite):
        out[i] = colour_indices(planes[i])
    return out


def render_feature_grid(planes: np.ndarray, path: Path) -> None:
    """A grid of channels, each normalised on its own, saved as an 8-bit RGB PNG."""
    lut = colormap_lut()
    c, h, w = planes.shape
    scale = max(1, math.ceil(DISSECT_TILE_MIN / max(h, w)))
    th, tw = h * scale, w * scale
    if max(th, tw) > DISSECT_TILE_MAX:
        f = DISSECT_TILE_MAX / max(th, tw)
        th, tw = max(1, round(th * f)), max(1, round(tw * f))
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    pad = 2
    scanlines, canvas = blank_scanlines(rows * (th + pad) + pad, cols * (tw + pad) + pad)
    # Small maps (most ViT and detector layers) are colour-mapped all channels at once: a
    # Python loop of numpy calls per channel cost more than the arithmetic. Large maps stay one
    # channel at a time, so the writer's working memory stays a few copies of one channel.
    indices = colour_indices_all(planes) if h * w <= DISSECT_VECTOR_PIXELS else None
    if indices is not None and scale > 1 and (th, tw) == (h * scale, w * scale):  # same pixels as PIL's NEAREST
        indices = indices.repeat(scale, axis=1).repeat(scale, axis=2)  # uint8 indices: a third of RGB's bytes
    for i in range(c):
        r, q = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + q * (tw + pad)
        tile = canvas[y : y + th, x : x + tw]
        channel = indices[i] if indices is not None else colour_indices(planes[i])
        if channel.shape == (th, tw):  # the colours go straight into the canvas: no RGB temporary
            np.take(lut, channel, axis=0, out=tile, mode="clip")
        else:
            rgb = Image.fromarray(np.take(lut, channel, axis=0))
            tile[...] = rgb.resize((tw, th), Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX)
    path.write_bytes(png_bytes(scanlines, canvas.shape[1], canvas.shape[0]))


def blank_scanlines(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A white RGB canvas inside PNG scanlines: each row is a filter byte (0: no filter; the
    feature grids are noise-like, where filters cost time and save little) and the row's pixels,
    so the finished canvas is deflated without another copy."""
    scanlines = np.full((height, 1 + 3 * width), 255, np.uint8)
    scanlines[:, 0] = 0
    return scanlines, scanlines[:, 1:].reshape(height, width, 3)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def png_bytes(scanlines: np.ndarray, width: int, height: int) -> bytes:
    """An 8-bit RGB PNG (colour type 2, no interlace) of unfiltered scanlines."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = deflate_module.compress(scanlines.data, PNG_DEFLATE_LEVEL)  # no copy: C-contiguous
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")
