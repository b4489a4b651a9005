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
only composes its children (nn.Sequential, a conv-norm-activation block: each call gets what the container
got or an earlier call returned, the very tensor, unchanged, and the container returns one of them) is
exactly 0 without a replay; so is every container in a variant whose replay is the reference's own
computation (the variant's `containers_exact`, channels-last). Their records say why (`zero_because`).

A frame keeps references, not copies, so a tensor written in place after it was kept (an in-place
ReLU on the output of the norm before it, `out += identity` on a block's last norm) no longer holds what
the call returned. Every kept tensor's version counter (bumped by each in-place write) is noted when it
is kept: a call whose tensors were written since is replayed by computing it in fp32 on what it gets,
not by its stale reference. A container whose forward wrote into its own input is not replayed (its
record says so). Version counters exist outside inference mode only: the reference pass runs the
network under no_grad instead (`tracking_writes`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from ..common import first_tensor
from ..records.divergence import ErrorFigures, OpsRecord
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


def flat_tensors(value) -> list:
    """The tensors inside a tensor, tuple, list or dict, in order (a Concat's list of inputs included)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in flat_tensors(item)]
    return []


def versions(tensors: list) -> tuple:
    """Each tensor's version counter (None for an inference tensor, which has none)."""
    return tuple(None if t.is_inference() else t._version for t in tensors)


def same_inputs(args, kwargs, reference_args, reference_kwargs) -> bool:
    """The same tensors (shape and every value) in the same places, inside lists and tuples too; anything
    not a tensor is not compared."""
    import torch

    if len(args) != len(reference_args) or set(kwargs) != set(reference_kwargs):
        return False
    tensors = flat_tensors((args, [kwargs[k] for k in sorted(kwargs)]))
    reference = flat_tensors((reference_args, [reference_kwargs[k] for k in sorted(kwargs)]))
    return len(tensors) == len(reference) and all(map(torch.equal, tensors, reference))


def in_fp32(forward, args, kwargs):
    """`forward` with autocast off and its floating-point inputs in float32: the reference's computation."""
    import torch

    def full(x):
        return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    device = tensor_device(list(args) + list(kwargs.values()))
    with torch.autocast(device.type, enabled=False):
        return forward(*(full(a) for a in args), **{k: full(v) for k, v in kwargs.items()})


def output_bytes(value) -> int:
    return sum(t.numel() * t.element_size() for t in flat_tensors(value))


def instance_forward(module):
    """The forward set on the instance (an override, a fused forward), or None: its class's runs."""
    return module.__dict__.get("forward")


def restore_forward(module, saved) -> None:
    """Put back the instance forward `instance_forward` returned (None: the class's again)."""
    if saved is None:
        module.__dict__.pop("forward", None)
    else:
        module.forward = saved


@contextlib.contextmanager
def tracking_writes(network):
    """The network's forward, for the duration, under no_grad instead of inference mode (whose tensors have
    no version counter), its inference-tensor inputs copied into normal ones."""
    import torch

    def normal(value):
        if isinstance(value, torch.Tensor):
            return value.clone() if value.is_inference() else value
        if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
            return type(value)(normal(v) for v in value)
        return value

    saved, original = instance_forward(network), network.forward

    def forward(*args, **kwargs):
        with torch.inference_mode(False), torch.no_grad():
            return original(*normal(args), **{k: normal(v) for k, v in kwargs.items()})

    network.forward = forward
    try:
        yield
    finally:
        restore_forward(network, saved)


@dataclass
class Call:
    """A call kept in a frame: the module, what it got and returned (references), and the versions of
    those tensors when it was called and when it returned."""

    module: Any
    positional: tuple
    keywords: dict
    output: Any
    inputs_at_call: tuple
    output_at_return: tuple

    def intact(self) -> bool:
        """Nothing it got or returned was written in place since (nor during the call: an in-place
        module): its kept tensors still hold the call's values. Unknown for an inference tensor: not intact."""
        return (
            None not in self.inputs_at_call + self.output_at_return  # an inference tensor: no telling
            and versions(flat_tensors((self.positional, self.keywords))) == self.inputs_at_call
            and versions(flat_tensors(self.output)) == self.output_at_return
        )


@dataclass
class Frame:
    """A running container's calls of the modules it calls, in order; and whether, so far, it only passed
    tensors on: each call got tensors the container got or an earlier call returned, unchanged since."""

    calls: list[Call] = field(default_factory=list)
    bytes: int = 0  # what they hold
    dropped: bool = False  # over HELD_BYTES: not kept, not replayed
    known: dict = field(default_factory=dict)  # id -> (weak reference, version) of those tensors
    composes: bool = True
    # the names of the torch functions its own code ran (not those of what it calls); None: not watched
    operations: set | None = None

    def learn(self, tensors: list) -> None:
        import weakref

        for tensor in tensors:
            if tensor.is_inference():  # no version to tell whether it changes
                self.composes = False
            else:
                self.known[id(tensor)] = (weakref.ref(tensor), tensor._version)

    def passes_on(self, tensors: list) -> bool:
        """Every tensor one it got or was returned, unchanged since."""

        def unchanged(tensor) -> bool:
            entry = self.known.get(id(tensor))
            return entry is not None and entry[0]() is tensor and entry[1] == tensor._version

        return all(not tensor.is_inference() and unchanged(tensor) for tensor in tensors)


EXACT_ZERO = ErrorFigures(relative_l2=0.0, cosine=1.0, max_abs=0.0, normalised=0.0)
COMPOSITION = "a composition: it only passes tensors between the modules it calls, unchanged (no replay)"


class Copies:
    """What a replay hands on, each tensor with the reference tensor it holds the values of (itself, or a
    copy) and its version then: a call given exactly its reference inputs that way, unchanged since, needs
    no comparison of their values."""

    def __init__(self, originals: list):
        self.of: dict = {}  # id -> (weak reference, version, the reference tensor)
        for tensor in originals:
            self.note(tensor, tensor)

    def note(self, tensor, original) -> None:
        import weakref

        if not tensor.is_inference():
            self.of[id(tensor)] = (weakref.ref(tensor), tensor._version, original)

    def clone_output(self, output):
        copy = clone_output(output)
        for tensor, original in zip(flat_tensors(copy), flat_tensors(output)):
            self.note(tensor, original)
        return copy

    def same(self, args, kwargs, reference_args, reference_kwargs) -> bool:
        if len(args) != len(reference_args) or set(kwargs) != set(reference_kwargs):
            return False
        tensors = flat_tensors((args, [kwargs[k] for k in sorted(kwargs)]))
        reference = flat_tensors((reference_args, [reference_kwargs[k] for k in sorted(kwargs)]))

        def holds(tensor, original) -> bool:
            entry = self.of.get(id(tensor))
            return entry is not None and entry[0]() is tensor and entry[1] == tensor._version and entry[2] is original

        return len(tensors) == len(reference) and all(map(holds, tensors, reference))


class ContainerShadows:
    """Hooks on every module with children (their frames and shadow calls) and on every module (what a
    frame receives). `reference` is the leaf pass: its hooks are suspended while a shadow call replays."""

    def __init__(self, variant, reference):
        self.variant, self.reference = variant, reference
        self.records: list[OpsRecord] = []
        self.calls: dict[str, int] = {}
        self.frames: list[Frame] = []
        self.inputs_at_call: list[tuple] = []  # of the modules running now, innermost last
        self.held = 0
        self.seconds = 0.0
        self.running: list[Frame | None] = []  # the modules running now, innermost last (None: a leaf)
        self.watching = False  # own_operations_watched: each frame learns the operations its code runs

    def register(self, network) -> list:
        handles = []
        for name, module in network.named_modules():
            name = name or type(network).__name__
            container = next(module.children(), None) is not None
            handles.append(module.register_forward_pre_hook(unwatched(self.calling(container)), with_kwargs=True))
            closing = self.closed(name, type(module).__name__) if container else self.returned()
            handles.append(module.register_forward_hook(unwatched(closing), with_kwargs=True))
        return handles

    @contextlib.contextmanager
    def own_operations_watched(self):
        """For the duration, every torch function a running container's own code calls (not one inside a
        leaf, nor the hooks', which run unwatched) is noted in its frame: what `exact_own_operations` of the
        variant judges."""
        from torch.overrides import TorchFunctionMode

        running = self.running

        class OwnOperations(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                frame = running[-1] if running else None
                if frame is not None and frame.operations is not None:
                    frame.operations.add(getattr(func, "__name__", repr(func)))
                return func(*args, **(kwargs or {}))

        self.watching = True
        try:
            with OwnOperations():
                yield
        finally:
            self.watching = False

    def keep(self, module, args, kwargs, output, inputs_at_call: tuple) -> None:
        """A call of `module` by the innermost running container, its inputs and output: into that
        container's frame (references, not copies, with their versions)."""
        if not self.frames:
            return
        frame = self.frames[-1]
        frame.learn(flat_tensors(output))
        if frame.dropped or self.variant.containers_exact:
            return
        nbytes = output_bytes(output) + output_bytes(list(args)) + output_bytes(list(kwargs.values()))
        if self.held + nbytes > HELD_BYTES:
            frame.dropped = True
            self.held -= frame.bytes
            frame.calls.clear()
            return
        frame.calls.append(Call(module, args, kwargs, output, inputs_at_call, versions(flat_tensors(output))))
        frame.bytes += nbytes
        self.held += nbytes

    # The hooks are functions, not bound methods: a deepcopy of the module (the channels-last shadow call)
    # copies its hooks, and a bound method would drag this object (and the spill's thread locks) along.
    def calling(self, container: bool):
        def before(module, args, kwargs):
            if self.reference.suspended:
                return
            tensors = flat_tensors((args, kwargs))
            self.inputs_at_call.append(versions(tensors))
            if self.frames and self.frames[-1].composes:
                self.frames[-1].composes = self.frames[-1].passes_on(tensors)
            if container:
                self.frames.append(Frame(operations=set() if self.watching else None))
                self.frames[-1].learn(tensors)
            self.running.append(self.frames[-1] if container else None)

        return before

    def returned(self):
        def after(module, args, kwargs, output):
            if not self.reference.suspended:
                self.running.pop()
                self.keep(module, args, kwargs, output, self.inputs_at_call.pop())

        return after

    def closed(self, name: str, module_type: str):
        def after(module, args, kwargs, output):
            if self.reference.suspended:
                return
            frame = self.frames.pop()
            self.running.pop()
            inputs_at_call = self.inputs_at_call.pop()
            self.held -= frame.bytes
            call = self.calls[name] = self.calls.get(name, 0) + 1
            record = OpsRecord(name, call, module_type, after=len(self.reference.records) - 1)
            self.records.append(record)
            tensor, _ = first_tensor(output)
            if tensor is None or not tensor.is_floating_point():
                record.note = "no floating-point tensor in the output"
            elif aliases_input(output, args, kwargs):
                record.note = "its output is its input: nothing of its own to compare"
            elif frame.composes and frame.passes_on(flat_tensors(output)):
                record.shadow, record.zero_because = dataclasses.replace(EXACT_ZERO), COMPOSITION
            elif self.variant.containers_exact:
                record.shadow, record.zero_because = dataclasses.replace(EXACT_ZERO), self.variant.containers_exact
            elif frame.dropped:
                record.note = f"what it calls returned over {HELD_BYTES >> 20} MB: not replayed"
            elif versions(flat_tensors((args, kwargs))) != inputs_at_call:
                record.note = "its forward wrote into its own input in place: it cannot be replayed from it"
            elif (exact := self.variant.exact_own_operations(name, frame.operations)) is not None:
                record.shadow, record.zero_because = dataclasses.replace(EXACT_ZERO), exact
            else:
                start = time.perf_counter()
                try:
                    replayed, _ = first_tensor(self.replay(module, frame.calls, args, kwargs))
                    record.shadow = error_figures(replayed, tensor, self.reference.buffers)
                except Exception as exc:  # noqa: BLE001  (a forward that cannot be replayed: its record says so)
                    record.note = f"no shadow call: {type(exc).__name__}: {exc}"[:300]
                self.seconds += time.perf_counter() - start
            self.keep(module, args, kwargs, output, inputs_at_call)

        return after

    def replay(self, container, calls: list[Call], args, kwargs):
        """The container's forward as the variant runs it, each module it calls being the reference: its
        reference output (a copy) for its reference input, else its fp32 computation on what it got (also
        when what the call kept was written in place since)."""
        queues: dict[int, list[tuple[Call, bool]]] = {}
        modules = {}
        for call in calls:
            queues.setdefault(id(call.module), []).append((call, call.intact()))
            modules[id(call.module)] = call.module
        saved = {key: instance_forward(module) for key, module in modules.items()}
        copies = Copies(flat_tensors((args, kwargs)))

        def as_reference(key):
            module, own_forward = modules[key], saved[key] or type(modules[key]).forward.__get__(modules[key])

            def forward(*call_args, **call_kwargs):
                if not queues[key]:
                    raise RuntimeError(f"{type(module).__name__} was called more often than in the reference pass")
                call, intact = queues[key].pop(0)
                if intact and (
                    copies.same(call_args, call_kwargs, call.positional, call.keywords)
                    or same_inputs(call_args, call_kwargs, call.positional, call.keywords)
                ):
                    return copies.clone_output(call.output)
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
                restore_forward(module, saved[key])
            self.reference.suspended = False


def unwatched(hook):
    """`hook` run with torch functions handled by no mode: its own operations (copies, comparisons, a
    shadow call) are not the container's (own_operations_watched)."""
    import torch

    def run(*args, **kwargs):
        with torch._C.DisableTorchFunction():
            return hook(*args, **kwargs)

    return run


def tensor_device(args):
    import torch

    tensor, _ = first_tensor(list(args))
    return tensor.device if tensor is not None else torch.device("cpu")
