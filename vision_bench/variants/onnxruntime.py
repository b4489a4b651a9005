"""The onnxruntime variant: the network exported to ONNX through the library's own path (the cache of
exported files under the models folder, keyed by shape, versions and a hash of the weights) and run by
ONNX Runtime. Its --divergence pass reads the outputs of the graph's nodes (divergence.onnx_intermediates)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ..common import VariantUnsupported, exception_line, log
from ..records.variants import VariantDetails
from .base import Variant

EXPORT_FOLDER = "exported"  # under the models folder


class OnnxRuntime(Variant):
    name = "onnxruntime"
    description = "the network exported to ONNX through the library's own path, run by ONNX Runtime"

    def prepare(self, bench, images: list) -> VariantDetails:
        return prepare_onnxruntime(bench, [image for _, image in images])

    def hooked(self, bench):
        from ..divergence.onnx_intermediates import ExportedVariant

        return ExportedVariant(self.name, self.divergence_tolerance(bench), files=exported_files)


def exported_files(bench, images: list, pictures: list) -> dict:
    """The export of `images` as --divergence reads and runs it: {name: (ONNX path, ONNX path)}."""
    return {name: (path, path) for name, path in export_onnx_files(bench, images)[0].items()}


def prepare_onnxruntime(bench, images: list) -> VariantDetails:
    paths, made = export_onnx_files(bench, images)
    return VariantDetails(
        files=[str(p) for p in paths.values()],
        cached=not made,
        export_seconds=sum(made.values()) if made else None,
        provider=bench.use_onnx(paths),
    )


def export_onnx_files(bench, images: list) -> tuple[dict, dict]:
    """The ONNX files `images` need, exported where the cache has none: ({name: path}, {name: seconds
    of the exports made})."""
    try:
        import onnxruntime  # noqa: F401  (a clear reason when it is missing)
    except ImportError as exc:
        raise VariantUnsupported(
            "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu on a CUDA machine)"
        ) from exc
    paths, made = {}, {}
    weights = weights_hash(bench.network())
    for name, sample in bench.onnx_targets(images).items():
        paths[name] = path = export_path(bench, name, weights)
        if path.exists():
            log("LOAD", f"Reusing the exported file {path}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.partial.onnx")
        log("LOAD", f"Exporting {bench.MODEL_NAME} to ONNX ({name}) -> {path}")
        start = time.perf_counter()
        try:
            with bench.progress(f"ONNX export ({name})", through_network=False):
                bench.export_onnx(partial, sample)
        except VariantUnsupported:
            raise
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise VariantUnsupported(f"the ONNX export failed: {exception_line(exc)}") from exc
        partial.replace(path)  # a file under its final name is always complete
        made[name] = time.perf_counter() - start
    return paths, made


def export_path(bench, name: str, weights: str | None = None) -> Path:
    """models/exported/<model>/<file>: keyed by the input shape (or dynamic axes and nominal size),
    the library versions and a hash of the weights, so a file is reused only for the same network.
    `weights`: the hash when the caller has it already (hashing DepthPro reads 3.8 GB)."""
    from importlib.metadata import version

    import torch

    library = bench.LIBRARY or "torch"
    key = (
        f"onnx-{name}-torch{torch.__version__.split('+')[0]}-{library}{version(library)}"
        f"-{weights or weights_hash(bench.network())}"
    )
    return bench.models_dir / EXPORT_FOLDER / bench.MODEL_NAME / f"{key}.onnx"


def weights_hash(network) -> str:
    """First 12 hex digits of a SHA-256 over the network's parameters and buffers, in order."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:12]


def export_with_torch(module, args: tuple, path: Path, input_names: list, output_names: list):
    """torch.onnx.export by the TorchScript exporter at the sample's shape: one file, weights
    inside it (the dynamo exporter writes them to a second file)."""
    import warnings

    import torch

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names, opset_version=17, dynamo=False
        )


def onnxruntime_session(path: Path, device):
    """An ONNX Runtime session on `device`: the CUDA provider on a GPU when this onnxruntime has it
    (onnxruntime-gpu), the CPU otherwise. Returns (session, the provider it actually uses)."""
    import onnxruntime as ort

    from ..divergence.runtime_values import session_providers

    session = ort.InferenceSession(str(path), providers=session_providers(device))
    return session, session.get_providers()[0]
