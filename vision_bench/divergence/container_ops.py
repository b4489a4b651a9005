"""The error a container module's own code adds (--divergence). What a module with children computes in
its forward besides calling them (attention's matmuls and softmax inside a transformer's attention
module, a residual sum, a split, an interpolation) belongs to no leaf, so no leaf's own error shows it.

During the reference pass each running container keeps what the modules it calls receive and return, in
call order (a frame; all open frames together hold at most HELD_BYTES, past which the frame is dropped
and its container says so). When the container returns, its forward runs once more as the variant runs
it, every module it calls being the reference: given the very input it got in the reference pass, it
returns a copy of its reference output without computing; given another input (the container's own
operations changed it), it computes in fp32 on that input. The difference from the container's real
output is the error of its own operations, carried through what it calls after them. A container that
only composes its children (nn.Sequential, a conv-norm-activation block) comes out exactly 0, and at the
cost of comparing inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..common import first_tensor
from ..records.divergence import OpsRecord
from .error_figures import aliases_input, error_figures

HELD_BYTES = 256 << 20


def clone_output(value):
    """A copy of a module's output for a replay: tensors cloned (the container may write into what its
    children return), tuples and lists rebuilt, anything else as it is."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(clone_output(v) for v in value)
    return value


def same_inputs(args, kwargs, reference_args, reference_kwargs) -> bool:
    """The same tensors (shape and every value) in the same places; anything not a tensor is not compared."""
    import torch

    if len(args) != len(reference_args) or set(kwargs) != set(reference_kwargs):
        return False
    pairs = list(zip(args, reference_args)) + [(kwargs[k], reference_kwargs[k]) for k in kwargs]
    return all(
        torch.equal(a, b)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
        else not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor)
        for a, b in pairs
    )


def in_fp32(forward, args, kwargs):
    """`forward` with autocast off and its floating-point inputs in float32: the reference's computation."""
    import torch

    def full(x):
        return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    device = tensor_device(list(args) + list(kwargs.values()))
    with torch.autocast(device.type, enabled=False):
        return forward(*(full(a) for a in args), **{k: full(v) for k, v in kwargs.items()})


def output_bytes(value) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(output_bytes(v) for v in value)
    return 0


@dataclass
class Frame:
    """A running container's calls of the modules it calls: (module, args, kwargs, output), in order."""

    calls: list = field(default_factory=list)
    bytes: int = 0  # what they hold
    dropped: bool = False  # over HELD_BYTES: not kept, not replayed


class ContainerShadows:
    """Hooks on every module with children (their frames and shadow calls) and on every module (what a
    frame receives). `reference` is the leaf pass: its hooks are suspended while a shadow call replays."""

    def __init__(self, variant, reference):
        self.variant, self.reference = variant, reference
        self.records: list[OpsRecord] = []
        self.calls: dict[str, int] = {}
        self.frames: list[Frame] = []
        self.held = 0
        self.seconds = 0.0

    def register(self, network) -> list:
        handles = []
        for name, module in network.named_modules():
            name = name or type(network).__name__
            if next(module.children(), None) is not None:
                handles.append(module.register_forward_pre_hook(self.opened(name), with_kwargs=True))
                handles.append(module.register_forward_hook(self.closed(name, type(module).__name__), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(self.returned(), with_kwargs=True))
        return handles

    def keep(self, module, args, kwargs, output) -> None:
        """A call of `module` by the innermost running container, its inputs and output: into that
        container's frame (references, not copies)."""
        if not self.frames or self.frames[-1].dropped:
            return
        frame = self.frames[-1]
        nbytes = output_bytes(output) + output_bytes(list(args)) + output_bytes(list(kwargs.values()))
        if self.held + nbytes > HELD_BYTES:
            frame.dropped = True
            self.held -= frame.bytes
            frame.calls.clear()
            return
        frame.calls.append((module, args, kwargs, output))
        frame.bytes += nbytes
        self.held += nbytes

    def returned(self):
        # A function, not a bound method: a deepcopy of the module (the channels-last shadow call) copies its
        # hooks, and a bound method would drag this object (and the spill's thread locks) along.
        def after(module, args, kwargs, output):
            if not self.reference.suspended:
                self.keep(module, args, kwargs, output)

        return after

    def opened(self, name: str):
        def before(module, args, kwargs):
            if not self.reference.suspended:
                self.frames.append(Frame())

        return before

    def closed(self, name: str, module_type: str):
        def after(module, args, kwargs, output):
            if self.reference.suspended:
                return
            frame = self.frames.pop()
            self.held -= frame.bytes
            call = self.calls[name] = self.calls.get(name, 0) + 1
            record = OpsRecord(name, call, module_type, after=len(self.reference.records) - 1)
            self.records.append(record)
            tensor, _ = first_tensor(output)
            if tensor is None or not tensor.is_floating_point():
                record.note = "no floating-point tensor in the output"
            elif frame.dropped:
                record.note = f"what it calls returned over {HELD_BYTES >> 20} MB: not replayed"
            elif aliases_input(output, args, kwargs):
                record.note = "its output is its input: nothing of its own to compare"
            else:
                start = time.perf_counter()
                try:
                    replayed, _ = first_tensor(self.replay(module, frame.calls, args, kwargs))
                    record.shadow = error_figures(replayed, tensor, self.reference.buffers)
                except Exception as exc:  # noqa: BLE001  (a forward that cannot be replayed: its record says so)
                    record.note = f"no shadow call: {type(exc).__name__}: {exc}"[:300]
                self.seconds += time.perf_counter() - start
            self.keep(module, args, kwargs, output)

        return after

    def replay(self, container, calls: list, args, kwargs):
        """The container's forward as the variant runs it, each module it calls being the reference: its
        reference output (a copy) for its reference input, else its fp32 computation on what it got."""
        queues: dict[int, list] = {}
        modules = {}
        for module, *call in calls:
            queues.setdefault(id(module), []).append(call)
            modules[id(module)] = module
        saved = {key: module.__dict__.get("forward") for key, module in modules.items()}

        def as_reference(key):
            module, own_forward = modules[key], saved[key] or type(modules[key]).forward.__get__(modules[key])

            def forward(*call_args, **call_kwargs):
                if not queues[key]:
                    raise RuntimeError(f"{type(module).__name__} was called more often than in the reference pass")
                reference_args, reference_kwargs, output = queues[key].pop(0)
                if same_inputs(call_args, call_kwargs, reference_args, reference_kwargs):
                    return clone_output(output)
                return in_fp32(own_forward, call_args, call_kwargs)

            return forward

        self.reference.suspended = True
        try:
            for key, module in modules.items():
                module.forward = as_reference(key)
            with self.variant.context(tensor_device(args)):
                return container.forward(*args, **kwargs)
        finally:
            for key, module in modules.items():
                if saved[key] is None:
                    module.__dict__.pop("forward", None)
                else:
                    module.forward = saved[key]
            self.reference.suspended = False


def tensor_device(args):
    import torch

    tensor, _ = first_tensor(list(args))
    return tensor.device if tensor is not None else torch.device("cpu")
