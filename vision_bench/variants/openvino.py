"""The OpenVINO variants: the network's ONNX export (the cache the onnxruntime variant fills, through
the library's own exporter or the default torch.onnx one) converted by openvino.convert_model, saved as
IR beside it and compiled for the CPU. `openvino` pins the inference precision to f32 (on a CPU with
AVX512-BF16 or AMX OpenVINO's default is bf16) and is held to the fp32 limits; `openvino-bf16` is
OpenVINO's own default where that default is bf16, held to the half-precision limits; `openvino-int8`
is the network quantised by NNCF's post-training quantisation on the calibration set
(variants.calibration), held to the model's INT8 limits."""

from __future__ import annotations

import time
from pathlib import Path

from ..common import VariantUnsupported, log
from ..records.variants import VariantDetails
from .base import Variant
from .calibration import Int8Limits, calibration_inputs, fingerprint
from .onnxruntime import export_onnx_files
from .openvino_runtime import DEVICE, LATENCY, converter_reason, import_openvino

F32 = {"INFERENCE_PRECISION_HINT": "f32"}


class OpenVino(Variant):
    name = "openvino"
    description = "the ONNX export converted by OpenVINO, compiled for the CPU with inference precision pinned to f32"
    config = LATENCY | F32

    def prepare(self, bench, images: list) -> VariantDetails:
        ov = import_openvino()
        self.check_cpu(ov)
        pictures = [image for _, image in images]
        paths, made = export_onnx_files(bench, pictures)
        start = time.perf_counter()
        converted = {name: self.converted(ov, bench, path) for name, path in paths.items()}
        runs = bench.use_openvino(converted, self.config, paths)
        log("VARIANT", f"{self.name}: {runs} (converted in {time.perf_counter() - start:.1f} s)")
        return VariantDetails(
            files=[str(p) for p in converted.values()],
            cached=not made,
            export_seconds=sum(made.values()) if made else None,
            provider=runs,
        )

    def check_cpu(self, ov) -> None:
        """What this variant needs of the CPU; OpenVINO runs on any x86-64 in f32."""

    def hooked(self, bench):
        from ..divergence.onnx_intermediates import ExportedVariant

        self.check_cpu(import_openvino())
        return ExportedVariant(self.name, self.divergence_tolerance(bench), self.divergence_files, self.open_values)

    def divergence_files(self, bench, images: list, pictures: list) -> dict:
        """--divergence's files: {name: (the ONNX export, the IR this variant compiles)} for `images`."""
        ov = import_openvino()
        self.before_conversion(bench, pictures)
        return {
            name: (path, self.converted(ov, bench, path)) for name, path in export_onnx_files(bench, images)[0].items()
        }

    def before_conversion(self, bench, pictures: list) -> None:
        """What converted() needs of the run's pictures (nothing, unless the conversion calibrates)."""

    def open_values(self, xml: Path, feeds: dict, device):
        """The IR's values as --divergence reads them, compiled with this variant's configuration."""
        from ..divergence.runtime_values import OpenVinoValues

        return OpenVinoValues(xml, feeds, self.config)

    def converted(self, ov, bench, onnx_path: Path) -> Path:
        """The OpenVINO IR of `onnx_path` (converted once, kept beside the ONNX file): its .xml path."""
        xml = ir_path(onnx_path, "fp32")
        if not xml.exists():
            save_ir(ov, convert(ov, onnx_path), xml)
        return xml


class OpenVinoBf16(OpenVino):
    name = "openvino-bf16"
    description = "the ONNX export converted by OpenVINO, compiled for the CPU at OpenVINO's default precision (bf16)"
    precision = "bfloat16"
    config = LATENCY

    def check_cpu(self, ov) -> None:
        core = ov.Core()
        default = str(core.get_property(DEVICE, "INFERENCE_PRECISION_HINT"))
        if "bf16" not in default and "bfloat16" not in default:
            capabilities = ", ".join(core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))
            raise VariantUnsupported(
                f"OpenVINO's default inference precision on this CPU is {default}, not bf16 (the CPU lacks "
                f"AVX512-BF16 and AMX; OPTIMIZATION_CAPABILITIES: {capabilities})"
            )


class OpenVinoInt8(Int8Limits, OpenVino):
    name = "openvino-int8"
    description = "the OpenVINO conversion quantised to INT8 by NNCF on the calibration set; the float layers in f32"

    def before_conversion(self, bench, pictures: list) -> None:
        self.calibration, self.inputs = calibration_inputs(bench, pictures)
        self.float_nodes = 0

    def prepare(self, bench, images: list) -> VariantDetails:
        self.before_conversion(bench, [image for _, image in images])
        details = super().prepare(bench, images)
        details.calibration, details.float_nodes = self.calibration.description, self.float_nodes
        return details

    def converted(self, ov, bench, onnx_path: Path) -> Path:
        scope = bench.INT8_IGNORED_SCOPE
        [inputs] = [arrays for name, arrays in self.inputs.items() if onnx_path.stem.startswith(f"onnx-{name}-")]
        xml = ir_path(onnx_path, f"int8-{fingerprint(inputs, repr(scope.patterns))}")
        model = convert(ov, onnx_path)
        ignored = scope.excluded(op.get_friendly_name() for op in model.get_ops())
        self.float_nodes += len(ignored)
        if not xml.exists():
            save_ir(ov, quantise(model, inputs, ignored), xml)
        return xml


def convert(ov, onnx_path: Path):
    try:
        return ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise VariantUnsupported(f"OpenVINO could not convert {onnx_path.name}: {converter_reason(exc)}") from exc


def quantise(model, inputs: list, ignored: list[str]):
    """NNCF's post-training quantisation (min-max ranges on every calibration input, fast bias correction)."""
    try:
        import nncf
    except ImportError as exc:
        raise VariantUnsupported("nncf is not installed (pip install nncf)") from exc
    log("VARIANT", f"NNCF: quantising on {len(inputs)} calibration input(s), {len(ignored)} node(s) kept in float")
    try:
        return nncf.quantize(
            model,
            nncf.Dataset(inputs),
            subset_size=len(inputs),
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
        )
    except Exception as exc:
        raise VariantUnsupported(f"NNCF could not quantise the model: {converter_reason(exc)}") from exc


def ir_path(onnx_path: Path, kind: str) -> Path:
    """<the ONNX file's stem>-<kind>_openvino_model/model.xml beside it (ultralytics recognises the
    folder's suffix as an OpenVINO model)."""
    return onnx_path.parent / f"{onnx_path.stem}-{kind}_openvino_model" / "model.xml"


def save_ir(ov, model, xml: Path) -> None:
    """The IR written whole or not at all; weights as they are (OpenVINO would compress them to fp16)."""
    import shutil

    partial = xml.parent.with_name(f".{xml.parent.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    ov.save_model(model, str(partial / xml.name), compress_to_fp16=False)
    shutil.rmtree(xml.parent, ignore_errors=True)
    partial.rename(xml.parent)
