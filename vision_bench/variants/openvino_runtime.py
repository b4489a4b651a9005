"""Running OpenVINO models on the CPU for the openvino variants: the compile configuration each pins,
a compiled model behind ONNX Runtime's run() (so that a model's forward runs either the same way), the
configuration imposed on a library that compiles by itself (ultralytics' OpenVINO backend), and the
one-line description of what runs (the precision OpenVINO actually chose, read back)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..common import VariantUnsupported, exception_line

DEVICE = "CPU"
LATENCY = {"PERFORMANCE_HINT": "LATENCY"}  # one request at a time, as the timed runs call it


def converter_reason(exc: BaseException) -> str:
    """A converter's or compiler's error in one line: its first line (OpenVINO's messages go on with the
    C++ source location and a trace of the graph), as exception_line writes it."""
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    if not first:
        return exception_line(exc)
    return f"{type(exc).__name__}: {' '.join(first.split()).encode('ascii', 'ignore').decode().rstrip('.')}"


def import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise VariantUnsupported("openvino is not installed (pip install openvino nncf)") from exc
    return openvino


class OpenVinoSession:
    """A compiled OpenVINO model with ONNX Runtime's run(output names, {input name: array}) -> [arrays]."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, output_names, feed: dict) -> list:
        results = self.request.infer(feed)
        return [results[output] for output in self.compiled.outputs]


def describe(compiled) -> str:
    """'OpenVINO CPU, f32 inference': the device and the precision OpenVINO computes in, as compiled."""
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    return f"OpenVINO {DEVICE}, {precision.to_string() if hasattr(precision, 'to_string') else precision} inference"


def compile_openvino(path: Path, config: dict) -> tuple[OpenVinoSession, str]:
    """The model at `path` (.xml) compiled for the CPU with `config`: (session, description)."""
    ov = import_openvino()
    core = ov.Core()
    try:
        compiled = core.compile_model(core.read_model(str(path)), DEVICE, config)
    except Exception as exc:
        raise VariantUnsupported(f"OpenVINO could not compile {path.name}: {converter_reason(exc)}") from exc
    return OpenVinoSession(compiled), describe(compiled)


@contextlib.contextmanager
def compiled_with(pinned: dict):
    """Every Core.compile_model inside gets `pinned` over its own configuration (a library that compiles by itself,
    as ultralytics' OpenVINO backend does with its own hints, still computes in the variant's precision)."""
    ov = import_openvino()
    original = ov.Core.compile_model

    def compile_model(self, model, device_name=None, config=None, **kwargs):
        return original(self, model, DEVICE, {**(config or {}), **pinned}, **kwargs)

    ov.Core.compile_model = compile_model
    try:
        yield
    finally:
        ov.Core.compile_model = original
