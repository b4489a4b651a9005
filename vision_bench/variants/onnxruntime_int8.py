"""The onnxruntime-int8 variant: the network's ONNX export (the onnxruntime variant's cache) quantised
by ONNX Runtime's static quantisation (quantize_static: QDQ format, per-channel int8 weights, uint8
activations, min-max ranges on the calibration set of variants.calibration, the model's ignored scope
left in float), run by ONNX Runtime as the onnxruntime variant runs its export; held to the model's
INT8 limits."""

from __future__ import annotations

import time
from pathlib import Path

from ..common import VariantUnsupported, log
from ..records.variants import VariantDetails
from .base import Variant
from .calibration import Int8Limits, calibration_inputs, fingerprint
from .onnxruntime import export_onnx_files
from .openvino_runtime import converter_reason


class OnnxRuntimeInt8(Int8Limits, Variant):
    name = "onnxruntime-int8"
    description = "the ONNX export quantised by ONNX Runtime (static, QDQ, per-channel weights), run by ONNX Runtime"

    def hooked(self, bench):
        from ..divergence.onnx_intermediates import ExportedVariant

        return ExportedVariant(self.name, self.divergence_tolerance(bench), quantised_files, open_quantised)

    def prepare(self, bench, images: list) -> VariantDetails:
        pictures = [image for _, image in images]
        calibration, inputs = calibration_inputs(bench, pictures)
        paths, made = export_onnx_files(bench, pictures)
        start, quantised, float_nodes = time.perf_counter(), {}, 0
        for name, path in paths.items():
            quantised[name], excluded = quantised_file(path, inputs[name], bench.INT8_IGNORED_SCOPE)
            float_nodes += excluded
        provider = bench.use_onnx(quantised)
        log("VARIANT", f"{self.name}: quantised files ready in {time.perf_counter() - start:.1f} s")
        return VariantDetails(
            files=[str(p) for p in quantised.values()],
            cached=not made,
            export_seconds=sum(made.values()) if made else None,
            provider=provider,
            calibration=calibration.description,
            float_nodes=float_nodes,
        )


def quantised_files(bench, images: list, pictures: list) -> dict:
    """--divergence's files: {name: (the ONNX export, its QDQ copy calibrated on `pictures`)} for `images`."""
    _, inputs = calibration_inputs(bench, pictures)
    paths, _ = export_onnx_files(bench, images)
    return {
        name: (path, quantised_file(path, inputs[name], bench.INT8_IGNORED_SCOPE)[0]) for name, path in paths.items()
    }


def open_quantised(path: Path, feeds: dict, device):
    """The QDQ copy's values as --divergence reads them (the dequantised value after each quantised one)."""
    import onnx

    from ..divergence.runtime_values import OnnxRuntimeValues

    return OnnxRuntimeValues(onnx.load(str(path)), feeds, device)


def quantised_file(path: Path, inputs: list, scope) -> tuple[Path, int]:
    """The QDQ INT8 copy of `path` (made once, kept beside it, named by the calibration inputs) and the
    number of nodes the ignored scope kept in float."""
    import onnx

    source = onnx.load(str(path))
    excluded = scope.excluded(node.name for node in source.graph.node)
    target = path.with_name(f"{path.stem}-int8-{fingerprint(inputs, repr(scope.patterns))}.onnx")
    if target.exists():
        return target, len(excluded)
    partial = target.with_name(f".{target.stem}.partial.onnx")
    log("VARIANT", f"ONNX Runtime: quantising {path.name} on {len(inputs)} input(s), {len(excluded)} node(s) in float")
    try:
        quantise_static(path, partial, source.graph.input[0].name, inputs, excluded)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        raise VariantUnsupported(f"ONNX Runtime could not quantise {path.name}: {converter_reason(exc)}") from exc
    quantised = onnx.load(str(partial))
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(source.metadata_props)  # a library reads its own (ultralytics: names, stride)
    onnx.save(quantised, str(partial))
    partial.replace(target)
    return target, len(excluded)


def quantise_static(source: Path, target: Path, input_name: str, inputs: list, excluded: list[str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.pending = iter(inputs)

        def get_next(self):
            array = next(self.pending, None)
            return None if array is None else {input_name: array}

    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
    )
