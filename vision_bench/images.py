"""Input images: which files to benchmark (with the bundled samples as the fallback) and how
any image file is opened as 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .common import UsageError, log

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def load_rgb(path: Path) -> Image.Image:
    """Open any image as 8-bit RGB: EXIF rotation applied, 16-bit scaled, alpha dropped."""
    with Image.open(path) as opened:
        im: Image.Image = ImageOps.exif_transpose(opened)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(im, dtype=np.float64)
            top = 65535.0 if im.mode.startswith("I;16") else max(float(np.nanmax(arr)), 1.0)
            im = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
        elif im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return im.convert("RGB")


def check_image(path: Path) -> str | None:
    """Return why an image cannot be used, or None when it decodes completely."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            im.load()  # a full decode: verify() alone misses truncated JPEG data
        return None
    except Exception as exc:  # Pillow raises many types for bad files
        return f"{type(exc).__name__}: {exc}"


def bundled_sample_images() -> list[Path]:
    import importlib.util  # find the files without importing ultralytics into the parent process

    spec = importlib.util.find_spec("ultralytics")
    assets = Path(spec.origin).parent / "assets" if spec and spec.origin else None
    return [p for p in (assets / "bus.jpg", assets / "zidane.jpg") if p.exists()] if assets else []


def discover_images(user_paths: list[str] | None, default_dir: Path) -> tuple[list[Path], str]:
    """Images to benchmark, and where they came from. Falls back only for the default folder."""
    if user_paths:
        candidates: list[Path] = []
        for raw in user_paths:
            p = Path(raw).expanduser()
            if not p.exists():
                raise UsageError(
                    f"--images: '{raw}' does not exist; give an image file or a folder of .jpg/.jpeg/.png images"
                )
            if p.is_dir():
                found = sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES)
                if not found:
                    raise UsageError(f"--images: folder '{raw}' holds no .jpg/.jpeg/.png files")
                candidates.extend(found)
            else:
                candidates.append(p)
        source = "--images"
    else:
        folder = default_dir
        candidates = (
            sorted(c for c in folder.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        source = str(folder)

    usable = []
    for path in candidates:
        problem = check_image(path)
        if problem:
            log("WARNING", f"Skipping image {path}: {problem}")
        else:
            usable.append(path)

    if not usable:
        if user_paths:
            raise UsageError("--images: no readable image among the files given (see the warnings above)")
        usable = bundled_sample_images()
        if not usable:
            raise UsageError(f"no usable image in {default_dir} and no bundled sample images; add images there")
        log(
            "INFO",
            f"No usable image in {default_dir}; using the sample photos bundled with ultralytics "
            f"({', '.join(p.name for p in usable)})",
        )
        source = "ultralytics bundled samples"
    return usable, source
