"""The calibration set of the INT8 variants (openvino-int8, onnxruntime-int8): the run's images, then
deterministic flips and crops of them when there are fewer than the model's CALIBRATION_SIZE, each
turned into the network's input as a pipeline call gives it (bench.network_input), and resized to the
shape of an export made at a fixed shape. Both variants calibrate on the same set, and share their
limits (Int8Limits)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..common import VariantUnsupported

CORNERS = {"centre": (0.5, 0.5), "top-left": (0.0, 0.0), "bottom-right": (1.0, 1.0), "top-right": (1.0, 0.0)}
CROP_SHARES = (0.8, 0.6)


def crop(image, share: float, left: float, top: float):
    """The share x share window (of width and height) whose corner sits at (left, top) of the free margin."""
    width, height = image.size
    w, h = round(width * share), round(height * share)
    x, y = round((width - w) * left), round((height - h) * top)
    return image.crop((x, y, x + w, y + h))


def flip(image):
    from PIL import Image

    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def cropper(share: float, where: str, flipped: bool):
    def transform(image):
        cut = crop(image, share, *CORNERS[where])
        return flip(cut) if flipped else cut

    return transform


# (name, what it does to a PIL image): applied in this order, each to every image (the originals first)
TRANSFORMS = [("original", lambda image: image), ("horizontal flip", flip)] + [
    (f"{'flipped ' if flipped else ''}{where} crop {round(share * 100)}%", cropper(share, where, flipped))
    for share in CROP_SHARES
    for where in CORNERS
    for flipped in (False, True)
]


@dataclass
class CalibrationSet:
    """The samples (PIL images) and what they are: how many came from how many images, by which transforms."""

    samples: list
    images: int
    transforms: list[str]

    @property
    def description(self) -> str:
        return f"{len(self.samples)} sample(s) from {self.images} image(s): {', '.join(self.transforms)}"


def calibration_set(images: list, size: int) -> CalibrationSet:
    """`size` samples: every image as it is, then each transform of TRANSFORMS on every image in turn,
    until there are `size` (fewer when the transforms run out: len(TRANSFORMS) per image at most)."""
    if not images:
        raise VariantUnsupported("INT8 calibration needs images, and this run has none")
    samples: list = []
    used: list[str] = []
    for name, transform in TRANSFORMS:
        if len(samples) >= size:
            break
        used.append(name)
        samples.extend(transform(image) for image in images[: size - len(samples)])
    return CalibrationSet(samples=samples, images=len(images), transforms=used)


def network_inputs(bench, calibration: CalibrationSet, sample_tensor) -> list:
    """The network's input (float32 numpy) for every calibration sample, resized (bilinear) to
    `sample_tensor`'s shape when the export was made at a fixed one (None: dynamic axes, kept as given)."""
    import torch

    arrays = []
    with bench.progress("calibration inputs", through_network=False):
        for image in calibration.samples:
            tensor = bench.network_input(image).float()
            if sample_tensor is not None and tensor.shape != sample_tensor.shape:
                tensor = torch.nn.functional.interpolate(
                    tensor, size=tuple(sample_tensor.shape[-2:]), mode="bilinear", align_corners=False
                )
            arrays.append(tensor.cpu().numpy())
    return arrays


def fingerprint(arrays: list, *parts: str) -> str:
    """12 hex digits naming a quantised file: the calibration inputs and what else shaped it."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def calibration_inputs(bench, pictures: list) -> tuple[CalibrationSet, dict[str, list]]:
    """The calibration set of `pictures` (PIL images) and, for each ONNX file the model needs for them,
    the network's inputs it calibrates on: (set, {file name: [arrays]})."""
    calibration = calibration_set(pictures, bench.CALIBRATION_SIZE)
    targets = bench.onnx_targets(pictures)
    return calibration, {name: network_inputs(bench, calibration, sample) for name, sample in targets.items()}


class Int8Limits:
    """Mixed into an INT8 variant (before Variant): held to the model's INT8_TOLERANCE, said "int8"."""

    precision = "int8"

    def limits(self, bench) -> dict:
        return bench.INT8_TOLERANCE

    @property
    def limits_label(self) -> str:
        return "int8"
