"""Reading values of an exported graph from the runtime a variant runs it with, for the exported
variants' --divergence pass (divergence.onnx_intermediates): the values named by the ONNX export's
tensor names (divergence.onnx_mapping), made extra outputs of the graph a group at a time.

- OnnxRuntimeValues: an ONNX file run by ONNX Runtime (the fp32 export, or its QDQ INT8 copy). In a
  QDQ graph a value followed by QuantizeLinear -> DequantizeLinear is read after the DequantizeLinear:
  the quantised value is what the next layer sees, so it is that layer call's output in the variant.
- OpenVinoValues: an OpenVINO IR (the conversion of that export, or NNCF's INT8 model) compiled with the
  variant's configuration, one compiled model per group. OpenVINO keeps the ONNX tensor names on the
  operations that produce them (a fused Conv + bias keeps the Conv's on the Add, a SiLU fused into
  Swish keeps the Mul's); NNCF's FakeQuantize after a value has no name and is read in its place.
A value the runtime's graph no longer has is `missing`, with the reason the pass reports.
"""

from __future__ import annotations

import numpy as np

from .onnx_mapping import ELEMENT_BYTES, value_types

QUANTISE = ("QuantizeLinear", "DequantizeLinear")


def value_sizes(values: list[str], typed: dict) -> dict[str, int]:
    """The bytes of each value whose element type and shape shape inference gave at the fed shapes."""
    return {
        v: int(np.prod(typed[v][1])) * ELEMENT_BYTES.get(typed[v][0], 4)
        for v in values
        if v in typed and typed[v][1] is not None
    }


def session_providers(device) -> list:
    """ONNX Runtime's providers, first choice first: CUDA on the device when it is a GPU and onnxruntime
    has CUDA (onnxruntime-gpu), then the CPU; the variant's sessions and these passes' alike."""
    import onnxruntime as ort

    providers: list = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return providers


def dequantised(model) -> dict[str, str]:
    """{value: the DequantizeLinear output that follows it through a QuantizeLinear}: empty for a float graph."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    after = {}
    for node in model.graph.node:
        if node.op_type == QUANTISE[0]:
            dq = [n for n in consumers.get(node.output[0], []) if n.op_type == QUANTISE[1]]
            if dq:
                after[node.input[0]] = dq[0].output[0]
    return after


class OnnxRuntimeValues:
    """Values of an ONNX graph (a float export or its QDQ copy) read by ONNX Runtime: the graph with them
    as its outputs after its own, in a session of its own, run once per group. ONNX Runtime keeps every
    graph output of a session alive during a run, fetched or not (measured: 2.7 GB peak for 5 fetched
    values of 276 added), hence the groups."""

    # ONNX Runtime's quantiser fuses a Relu (or Clip) into the Conv before it, the uint8 range doing its work
    # BASIC_FOR_QDQ: a QDQ graph runs with ONNX Runtime's basic graph optimisations only. With the extended
    # ones (its int8 kernel fusions), a DequantizeLinear made a graph output read 0.0 where the graph
    # computes 2.0 (ONNX Runtime 1.32, yolo11n-detect's box head on random weights), while the graph's
    # own outputs were the same at every level. Unfused, each layer computes in float between its
    # DequantizeLinear and QuantizeLinear: what the int8 kernel computes, to its rounding.
    missing = "not in the quantised graph (the quantiser fused it into the next node, e.g. a Conv into its Relu)"

    def __init__(self, model, feeds: dict, device=None, typed: dict | None = None):
        self.providers = session_providers(device)  # first: without onnxruntime, fail before shape inference
        self.model, self.feeds = model, feeds
        self.typed = typed if typed is not None else value_types(model, feeds)
        self.base, self.present = len(model.graph.output), {o.name for o in model.graph.output}
        self.provider = str(self.providers[0][0] if len(self.providers) > 1 else self.providers[0])
        self.after = dequantised(model)

    def resolve(self, values: list[str]) -> dict[str, str]:
        """{value of the float export: the value to read in this graph}; a value it lacks is left out."""
        known = set(self.typed) | {v for n in self.model.graph.node for v in n.output}
        return {v: self.after.get(v, v) for v in values if v in known or v in self.after}

    def sizes(self, values: list[str]) -> dict[str, int]:
        return value_sizes(values, self.typed)

    def fetch(self, group: list[str]) -> list:
        import onnxruntime as ort

        del self.model.graph.output[self.base :]
        for v in group:
            if v not in self.present:
                self.model.graph.output.add().name = v  # no type given: ONNX Runtime takes the node's
        options = ort.SessionOptions()
        if self.after:  # a QDQ graph: see BASIC_FOR_QDQ
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        session = ort.InferenceSession(self.model.SerializeToString(), options, providers=self.providers)
        return session.run(group, self.feeds)

    def close(self) -> None:
        del self.model.graph.output[self.base :]


class OpenVinoValues:
    """Values of an OpenVINO IR read by compiling it with them as extra outputs (`config`: the variant's
    compile configuration, so that the values are computed in its precision), one model read and
    compiled per group: a compiled model allocates every output it has."""

    missing = "not in the OpenVINO model (fused or renamed by the conversion)"

    def __init__(self, xml, feeds: dict, config: dict):
        from ..variants.openvino_runtime import DEVICE, import_openvino

        self.core, self.device = import_openvino().Core(), DEVICE
        self.xml, self.feeds, self.config = str(xml), feeds, config
        self.provider = f"OpenVINO {DEVICE}"
        model = self.core.read_model(self.xml)
        self.ports = self.named_ports(model)

    @staticmethod
    def named_ports(model) -> dict:
        """{tensor name: the output read for it}: the producing operation's, or the FakeQuantize after it."""
        ports: dict = {}
        for op in model.get_ordered_ops():
            for output in op.outputs():
                after = [i.get_node() for i in output.get_target_inputs()]
                quantised = [n for n in after if n.get_type_name() == "FakeQuantize"]
                read = quantised[0].output(0) if quantised else output
                for name in output.get_names():
                    ports.setdefault(name, read)
        return ports

    def resolve(self, values: list[str]) -> dict[str, str]:
        return {v: v for v in values if v in self.ports}

    def sizes(self, values: list[str]) -> dict[str, int]:
        sizes = {}
        for v in values:
            shape = self.ports[v].get_partial_shape()
            if shape.is_static:
                sizes[v] = int(np.prod([d.get_length() for d in shape])) * 4  # read back as f32
        return sizes

    def fetch(self, group: list[str]) -> list:
        model = self.core.read_model(self.xml)
        ports = self.named_ports(model)
        added = model.add_outputs([ports[v] for v in group])  # a value that is an output already stays once

        def key(output):
            return output.get_node().get_friendly_name(), output.get_index()

        position = {key(o): k for k, o in enumerate(model.outputs)}
        compiled = self.core.compile_model(model, self.device, self.config)
        request = compiled.create_infer_request()
        request.infer(self.feeds)
        arrays = [np.array(request.get_output_tensor(position[key(o)]).data, dtype=np.float32) for o in added]
        del request, compiled
        return arrays

    def close(self) -> None:
        """Nothing held between groups."""
