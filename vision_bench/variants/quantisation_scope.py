"""Which parts of an exported graph the INT8 variants leave in floating point: a model's class constant
(ModelBenchmark.INT8_IGNORED_SCOPE), read by NNCF (openvino-int8) and ONNX Runtime (onnxruntime-int8)
alike. Node names are the ONNX export's, which OpenVINO keeps as its operations' names."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class QuantisationScope:
    """Regular expressions matched (re.fullmatch) against node names, and why they stay in float."""

    patterns: tuple[str, ...] = ()
    reason: str = ""

    def matches(self, name: str) -> bool:
        return any(re.fullmatch(pattern, name) for pattern in self.patterns)

    def excluded(self, names) -> list[str]:
        """The names (of an ONNX graph's nodes, of an OpenVINO model's operations) this scope keeps in float."""
        return [name for name in names if self.matches(name)]

    def __bool__(self) -> bool:
        return bool(self.patterns)
