"""Deploy-time variants of a model (--variants): what each one changes, preparing a loaded model
for it (autocast, channels-last, torch.compile, an ONNX export run by ONNX Runtime), the cache of
exported files, and the parity of a variant's outputs against the torch-fp32 reference.

The measuring itself (cold start, warm-up, timed runs, memory) is the reference's, in model_pass.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ..common import UsageError, VariantUnsupported, exception_line, log
from .parity import combine_verdicts, depth_parity, detection_parity, mask_parity, raw_output_parity, summarise, verdict

REFERENCE_VARIANT = "torch-fp32"
VARIANTS = {
    "torch-fp32": "eager PyTorch in float32, the reference every other variant is checked against",
    "torch-fp16": "autocast to float16 around the network (weights stay float32; autocast picks the ops)",
    "torch-bf16": "autocast to bfloat16 around the network (weights stay float32; autocast picks the ops)",
    "torch-channels-last": "network weights and input in channels-last memory format",
    "torch-compile": "torch.compile, default inductor backend; compiling falls in the cold start",
    "onnxruntime": "the network exported to ONNX through the library's own path, run by ONNX Runtime",
}
HALF_PRECISION = {"torch-fp16": "float16", "torch-bf16": "bfloat16"}
EXPORT_FOLDER = "exported"  # under the models folder


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


def limits_for(bench, variant: str) -> dict:
    return bench.HALF_PRECISION_TOLERANCE if variant in HALF_PRECISION else bench.PARITY_TOLERANCE


# -- preparing a loaded model -------------------------------------------------------------
def prepare_variant(bench, variant: str, images: list) -> dict:
    """Turn a freshly loaded model into `variant`; returns what the report shows about it. Raises
    VariantUnsupported when this model or device cannot run it."""
    import torch

    if variant in HALF_PRECISION:
        dtype = getattr(torch, HALF_PRECISION[variant])
        check_autocast(bench.device, dtype)
        bench.autocast_dtype = dtype
        return {"autocast_dtype": HALF_PRECISION[variant]}
    if variant == "torch-channels-last":
        bench.use_channels_last()
        return {"memory_format": "channels_last"}
    if variant == "torch-compile":
        bench.compile_network()
        return {"backend": "inductor"}
    if variant == "onnxruntime":
        return prepare_onnxruntime(bench, [image for _, image in images])
    return {}


def check_autocast(device, dtype) -> None:
    """A convolution and a matmul under autocast: a device without the kernels says so here,
    in one line, instead of failing inside the model."""
    import torch

    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
            x = torch.ones(1, 3, 8, 8, device=device)
            torch.nn.functional.conv2d(x, torch.ones(4, 3, 3, 3, device=device))
            (x.flatten(1) @ torch.ones(192, 4, device=device)).sum().item()
    except Exception as exc:
        raise VariantUnsupported(
            f"autocast to {dtype} on {device.type} is not available here: {exception_line(exc)}"
        ) from exc


def prepare_onnxruntime(bench, images: list) -> dict:
    paths, made = export_onnx_files(bench, images)
    details = {"files": [str(p) for p in paths.values()], "cached": not made}
    if made:
        details["export_seconds"] = sum(made.values())
    details["provider"] = bench.use_onnx(paths)
    return details


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

    wanted = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        wanted.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    session = ort.InferenceSession(str(path), providers=wanted)
    return session, session.get_providers()[0]


# -- parity against the reference ---------------------------------------------------------
def parity_outputs(bench, images: list) -> list[dict]:
    """The raw and task outputs of one (untimed) pipeline call per image."""
    out = []
    with bench.progress("parity outputs", through_network=False):
        for path, image in images:
            raw, task = bench.parity_outputs(image)
            out.append({"image": path.name, "raw": raw, "task": task})
    return out


def task_parity(task: str, reference: dict, variant: dict) -> dict:
    if not reference:
        return {}
    if task == "depth":
        # eps at 0.1% of the reference's largest depth: relative (inverse) depth is near zero far
        # away, where any error would otherwise read as a huge relative one
        eps = 1e-3 * float(abs(reference["depth"]).max()) if reference["depth"].size else 1e-6
        return {"depth": depth_parity(reference["depth"], variant.get("depth"), eps=max(eps, 1e-6))}
    if task == "sam":
        return {"masks": mask_parity(reference.get("masks"), variant.get("masks"))}
    return {"detection": detection_parity(reference, variant)}


def compare_outputs(bench, variant: str, reference: list[dict], outputs: list[dict]) -> dict:
    """Parity of a variant on every image: the figures per image, the worst case, the verdict."""
    tolerance = limits_for(bench, variant)
    per_image, verdicts = [], []
    for ref, var in zip(reference, outputs):
        figures = {
            "raw": raw_output_parity(ref["raw"], var["raw"]),
            **task_parity(bench.TASK, ref["task"], var["task"]),
        }
        verdicts.append(verdict(figures, tolerance))
        per_image.append({"image": ref["image"], **figures, "verdict": verdicts[-1][0]})
    overall, reasons = combine_verdicts(verdicts)
    return {
        "verdict": overall,
        "reasons": reasons,
        "worst": summarise(per_image),
        "per_image": per_image,
        "tolerance": "half precision" if variant in HALF_PRECISION else "fp32",
        "limits": tolerance,
    }
