"""Where a variant leaves the fp32 reference (--divergence): every call of every leaf module compared
record by record, matched by (module path, call index).

Two passes on the same image, on one instance of the model (its weights are never held twice):
- the reference pass (fp32) spills each leaf output to disk through a bounded queue and, inside the
  same hook, runs the leaf once more as the variant runs it on the reference's own input: the
  *shadow* call, whose error against the reference output is the error the layer itself adds;
- the variant pass runs the whole network as the variant and compares each leaf output with the
  spilled reference: the *propagated* error, own plus inherited.
The culprit is the first record, in execution order, whose own error passes the tolerance.
Host memory: the queue's bytes, one reference tensor read back, and float64 chunks of the figures.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..common import first_tensor, leaf_modules, log
from ..records import VariantStatus
from ..records.divergence import (
    Brief,
    CulpritSummary,
    DivergenceEntry,
    ErrorFigures,
    LayerRecord,
    OpsRecord,
    Passes,
    UnmatchedCall,
)
from .container_ops import (
    EXACT_ZERO,
    ContainerShadows,
    flat_tensors,
    in_fp32,
    tensor_device,
    tracking_writes,
    unwatched,
)
from .error_figures import FigureBuffers, aliases_input, cloned, figures_and_reference_sums
from .exact_modules import MOVES_OR_SELECTS, NOT_LOWERED_BY_AUTOCAST, NOT_LOWERED_OPERATIONS, exact_class
from .reference_store import ReferenceStore

METRICS = ("relative_l2", "cosine", "max_abs", "normalised")
TOP_OWN = 5


# -- the error figures of one record --------------------------------------------------------------
# -- how a variant runs one leaf ------------------------------------------------------------------
class HookedVariant:
    """A variant the divergence pass can hook: how it turns the model into itself after the
    reference pass (`apply`), and how it runs one leaf module on given inputs (`shadow`).
    `overrides`: {module path: forward(module, *args, **kwargs)} that replace a leaf's computation in
    both (a planted fault, or a module kept in fp32)."""

    shadow_mode = True  # False: a variant whose leaves cannot be run one by one (ONNX Runtime)

    def __init__(self, name: str, tolerance: float, overrides: dict | None = None):
        self.name = name
        self.tolerance = tolerance
        self.overrides = overrides or {}

    def apply(self, bench) -> None:
        install_overrides(bench.network(), self.overrides)

    def watch(self, bench):
        """Around the reference pass: what the variant pass will need from it (nothing, for a hooked one)."""
        import contextlib

        return contextlib.nullcontext()

    def compare(self, bench, image, store: ReferenceStore, records: list[LayerRecord]) -> tuple[float, dict]:
        """Turn `bench` into the variant and run the pipeline hooked: each leaf call's output against the
        spilled reference. Returns the pass's seconds and the entry's fields it adds (DivergenceEntry's)."""
        self.apply(bench)
        matched = VariantPass(store, records)
        seconds = hooked_pass(bench.network(), matched.hook, lambda: bench.run_pipeline(image))
        return seconds, dict(unmatched_in_variant=matched.unmatched[:20], unmatched_count=len(matched.unmatched))

    def context(self, device):
        import contextlib

        return contextlib.nullcontext()

    def exact_without_shadow(self, name: str, module, args, kwargs) -> str | None:
        """Why `module`'s own error is exactly 0 in this variant without a shadow call, or None (call it)."""
        return None

    # Why every container's own error is exactly 0 in this variant without a replay (None: replay them)
    containers_exact: str | None = None
    # Whether the reference pass notes each container's own operations (for exact_own_operations)
    watches_operations = False

    def exact_own_operations(self, name: str, operations: set | None) -> str | None:
        """Why a container that ran `operations` (torch function names; None: not watched) adds exactly 0
        in this variant without a replay, or None (replay it)."""
        return None

    def shadow(self, name: str, module, args, kwargs):
        with self.context(module_device(module, args)):
            override = self.overrides.get(name)
            return override(module, *args, **kwargs) if override else module.forward(*args, **kwargs)


class AutocastVariant(HookedVariant):
    def __init__(self, name: str, dtype, tolerance: float, overrides: dict | None = None):
        super().__init__(name, tolerance, overrides)
        self.dtype = dtype

    def apply(self, bench) -> None:
        super().apply(bench)
        bench.autocast_dtype = self.dtype

    def context(self, device):
        import torch

        return torch.autocast(device.type, dtype=self.dtype)

    def exact_without_shadow(self, name: str, module, args, kwargs) -> str | None:
        if name in self.overrides or not exact_class(module, NOT_LOWERED_BY_AUTOCAST):
            return None
        return "autocast lowers none of its operations: on the reference's input it computes the reference's output"

    watches_operations = True

    def exact_own_operations(self, name: str, operations: set | None) -> str | None:
        if name in self.overrides or operations is None or not operations <= NOT_LOWERED_OPERATIONS:
            return None
        return (
            "its own operations are ones autocast does not lower (" + ", ".join(sorted(operations)) + "): "
            "on the reference's inputs they compute the reference's output"
        )[:300]


class ChannelsLastVariant(HookedVariant):
    """Shadow: a copy of the leaf in channels-last on channels-last inputs (the model itself
    converts only after the reference pass)."""

    def apply(self, bench) -> None:
        super().apply(bench)
        bench.use_channels_last()

    # A replay runs the container's own operations on the reference's own (contiguous) inputs, with the
    # reference's outputs of what it calls: the reference's computation again, so exactly 0 every time
    containers_exact = "channels-last replays its own operations on the reference's inputs: the reference's computation"

    def exact_without_shadow(self, name: str, module, args, kwargs) -> str | None:
        if name in self.overrides:
            return None
        if exact_class(module, MOVES_OR_SELECTS):
            return "it moves or selects values: exact in any memory layout"
        four_d = [t for t in flat_tensors((args, kwargs, list(module.parameters(recurse=False)))) if t.dim() == 4]
        return None if four_d else "no 4-D weight or input: channels-last runs it as the reference did"

    def shadow(self, name: str, module, args, kwargs):
        import copy

        import torch

        def last(x):
            return (
                x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.dim() == 4 else x
            )

        override = self.overrides.get(name)
        args = tuple(last(a) for a in args)
        kwargs = {k: last(v) for k, v in kwargs.items()}
        if type(module) is torch.nn.Conv2d and not override and len(args) == 1 and not kwargs:
            # the weight converted, not the module copied: a deepcopy per call cost more than the convolution
            return module._conv_forward(args[0], last(module.weight), module.bias)
        # Only 4-D weights have a channels-last layout: a leaf without them runs as it is (no copy of a
        # 1024 x 4096 Linear per call), on its inputs converted
        has_4d = any(p.dim() == 4 for p in module.parameters(recurse=False))
        twin = copy.deepcopy(module).to(memory_format=torch.channels_last) if has_4d else module
        return override(twin, *args, **kwargs) if override else twin.forward(*args, **kwargs)


def module_device(module, args):
    for p in module.parameters():
        return p.device
    return tensor_device(args)


ORIGINAL_FORWARD = "_forward_before_override"


def own_forward(module):
    """The forward a module computes with when no override is installed: an instance one when it has one
    (ultralytics' fused Conv blocks set `forward = forward_fuse`), else its class's."""
    if ORIGINAL_FORWARD in module.__dict__:
        original = module.__dict__[ORIGINAL_FORWARD]
    else:
        original = module.__dict__.get("forward")
    return original or type(module).forward.__get__(module)


def install_overrides(network, overrides: dict) -> None:
    """Each module named in `overrides` computes through its override from now on (instance attribute
    `forward`, which nn.Module.__call__ reads; hooks still run). remove_overrides puts back what was there."""
    import functools

    for name, override in overrides.items():
        module = network.get_submodule(name)
        if ORIGINAL_FORWARD not in module.__dict__:
            module.__dict__[ORIGINAL_FORWARD] = module.__dict__.get("forward")
        module.forward = functools.partial(override, module)


def remove_overrides(network, names) -> None:
    """Undo install_overrides for `names`: the forward each had before."""
    for name in names:
        module = network.get_submodule(name)
        if ORIGINAL_FORWARD not in module.__dict__:
            continue
        original = module.__dict__.pop(ORIGINAL_FORWARD)
        if original is None:
            module.__dict__.pop("forward", None)
        else:
            module.forward = original


def fp32_forward(module, *args, **kwargs):
    """A module's own forward with autocast off and its floating-point inputs in float32: a module kept
    in fp32 inside a half-precision variant (a container with everything it calls)."""
    return in_fp32(own_forward(module), args, kwargs)


# -- the two passes ---------------------------------------------------------------------------------
class ReferencePass:
    """Hooks of the fp32 pass: a record per leaf call, its output spilled, its shadow call compared."""

    def __init__(self, variant: HookedVariant, store: ReferenceStore, shadow: bool = True):
        self.variant, self.store, self.with_shadow = variant, store, shadow
        self.records: list[LayerRecord] = []
        self.calls: dict[str, int] = {}
        self.shadow_s = 0.0
        self.buffers = FigureBuffers()
        self.suspended = False  # while a container's shadow call replays its children (container_ops)

    def hook(self, name: str, module_type: str):
        def after(module, args, kwargs, output):
            if self.suspended:
                return
            call = self.calls.get(name, 0) + 1
            self.calls[name] = call
            record = LayerRecord(len(self.records), name, call, module_type)
            self.records.append(record)
            tensor, _ = first_tensor(output)
            if tensor is None or not (tensor.is_floating_point() or tensor.is_complex()):
                record.note = "no floating-point tensor in the output"
                return
            record.shape = list(tensor.shape)
            self.store.put((name, call), tensor)
            if not self.with_shadow:
                return
            exact = self.variant.exact_without_shadow(name, module, args, kwargs)
            if exact:
                record.shadow, record.zero_because = dataclasses.replace(EXACT_ZERO), exact
                return
            if aliases_input(output, args, kwargs):
                if getattr(module, "inplace", False):
                    record.note = "in-place module: its input is overwritten, no shadow call"
                    return
                # an Identity or a view: its shadow call gets copies, so nothing it does reaches the reference
                args, kwargs = cloned(args), dict(zip(kwargs, cloned(list(kwargs.values()))))
            start = time.perf_counter()
            try:
                shadow, _ = first_tensor(self.variant.shadow(name, module, args, kwargs))
                if shadow is None:
                    record.note = "the shadow call returned no tensor"
                else:
                    record.shadow, sums = figures_and_reference_sums(shadow, tensor, self.buffers)
                    if sums is not None:  # the variant pass compares with the same reference: not summed again
                        self.store.reference_sums[(name, call)] = sums
            except Exception as exc:  # noqa: BLE001  (a leaf that cannot be called alone: its record says so)
                record.note = f"no shadow call: {type(exc).__name__}: {exc}"[:300]
            self.shadow_s += time.perf_counter() - start

        return unwatched(after)  # its copies and shadow calls are no container's own operations


class VariantPass:
    """Hooks of the variant pass: each leaf call's output against the spilled reference."""

    def __init__(self, store: ReferenceStore, records: list[LayerRecord]):
        self.store = store
        self.by_key = {(r.name, r.call): r for r in records}
        self.calls: dict[str, int] = {}
        self.unmatched: list[UnmatchedCall] = []
        self.buffers = FigureBuffers()

    def hook(self, name: str, module_type: str):
        def after(module, args, output):
            call = self.calls.get(name, 0) + 1
            self.calls[name] = call
            record = self.by_key.get((name, call))
            tensor, _ = first_tensor(output)
            if record is None:
                self.unmatched.append(UnmatchedCall(name, call, module_type))
                return
            if tensor is None or record.shape is None:
                return
            reference = self.store.tensor((name, call))
            if reference is None or tensor.shape != reference.shape:
                record.propagated = ErrorFigures(shape_mismatch=True, variant_shape=list(tensor.shape))
            else:
                known = self.store.reference_sums.get((name, call))
                record.propagated, _ = figures_and_reference_sums(tensor, reference, self.buffers, known)

        return after


def hooked_pass(network, make_hook, call, with_kwargs: bool = False) -> float:
    """`call()` with `make_hook(name, type)` on every leaf; returns its seconds. Hooks always removed."""
    handles = [
        m.register_forward_hook(make_hook(name, type(m).__name__), with_kwargs=with_kwargs)
        for name, m in leaf_modules(network)
    ]
    start = time.perf_counter()
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return time.perf_counter() - start


def run_divergence(bench, variant: HookedVariant, image, scratch: Path | None = None, progress=None) -> DivergenceEntry:
    """The reference pass (with shadow calls when the variant has them), then the variant's pass on the
    same instance; the figures of every record, the culprit, the top records by own error, as an entry
    still running (no image name, memory or medians yet). `bench` is left in the variant."""
    import contextlib

    store = ReferenceStore(scratch)
    progress = progress or (lambda what: contextlib.nullcontext())
    shadow = variant.shadow_mode
    try:
        reference = ReferencePass(variant, store, shadow=shadow)
        containers = ContainerShadows(variant, reference)
        handles = containers.register(bench.network()) if shadow else []
        try:
            with (
                progress("divergence: fp32 reference pass" + (" with shadow calls" if shadow else "")),
                variant.watch(bench),
                tracking_writes(bench.network()) if shadow else contextlib.nullcontext(),
                containers.own_operations_watched()
                if shadow and variant.watches_operations
                else contextlib.nullcontext(),
            ):
                reference_s = hooked_pass(
                    bench.network(), reference.hook, lambda: bench.run_pipeline(image), with_kwargs=True
                )
                store.flush()
        finally:
            for handle in handles:
                handle.remove()
        with progress(f"divergence: {variant.name} pass"):
            variant_s, extra = variant.compare(bench, image, store, reference.records)
        spilled = store.bytes_written
    finally:
        store.close()
    summary = summarise_records(reference.records, variant.tolerance, shadow, containers.records)
    entry = DivergenceEntry(
        variant.name,
        VariantStatus.RUNNING,
        **vars(summary),
        tolerance=variant.tolerance,
        metric="relative_l2",
        modes=["propagated", "shadow"] if shadow else ["propagated"],
        level="leaf",
        records=reference.records,
        ops_records=containers.records,
        passes=Passes(
            reference_s=reference_s - reference.shadow_s - containers.seconds,
            shadow_s=reference.shadow_s + containers.seconds,
            variant_s=variant_s,
            spill_wait_s=store.wait_s,
            spill_copy_s=store.copy_s,
            spill_write_s=store.write_s,
        ),
        spilled_bytes=spilled,
    )
    return dataclasses.replace(entry, **extra)  # an unknown field raises rather than vanish from the JSON


AnyRecord = LayerRecord | OpsRecord


def brief(record: AnyRecord) -> Brief:
    return Brief(
        record.position,
        record.name,
        record.call,
        f"{record.type} (its own operations)" if record.kind == "ops" else record.type,
        record.kind,
        record.own,
        record.inherited,
    )


def in_execution_order(records: list[LayerRecord], ops_records=()) -> list[AnyRecord]:
    """Leaf records and containers' own-operation records together: a container's after the last leaf
    call it made (`after`), in the order the containers returned."""
    keyed: list[tuple[tuple, AnyRecord]] = [((r.index, 0, 0), r) for r in records]
    keyed += [((r.after, 1, i), r) for i, r in enumerate(ops_records)]
    return [r for _, r in sorted(keyed, key=lambda kv: kv[0])]


def summarise_records(
    records: list[LayerRecord], tolerance: float, shadow: bool = True, ops_records=()
) -> CulpritSummary:
    """The culprit (first record, leaves and containers' own operations in execution order, whose own error
    passes the tolerance; without shadow calls, whose propagated error does), the first record whose
    propagated error does, the top records by own error."""

    def over(value):
        return value is not None and value > tolerance

    ordered = in_execution_order(records, ops_records)
    own = [r for r in ordered if r.own is not None]
    first_propagated = next((r for r in records if over(r.inherited)), None)
    first_own = next((r for r in ordered if over(r.own)), None) if shadow else first_propagated
    top = sorted(own, key=lambda r: -(r.own or 0.0))[:TOP_OWN]
    return CulpritSummary(
        first_divergent=brief(first_own) if first_own else None,
        culprit_by="own" if shadow else "propagated",
        first_propagated=brief(first_propagated) if first_propagated else None,
        top_own=[brief(r) for r in top],
        over_tolerance=sum(1 for r in ordered if over(r.own if shadow else r.inherited)),
        compared=sum(1 for r in records if r.propagated is not None),
    )


def candidate_modules(records: list[AnyRecord], tolerance: float, limit: int = 32) -> list[str]:
    """Modules to try in fp32, worst own error first: those over the tolerance, else the worst few."""
    ranked = sorted((r for r in records if r.own is not None), key=lambda r: -(r.own or 0.0))
    over = [r for r in ranked if (r.own or 0.0) > tolerance]
    names = list(dict.fromkeys(r.name for r in (over or ranked[:8])))
    return names[:limit]


def prefix_sizes(n: int) -> list[int]:
    """1, 2, 3, 5, 8, ... up to n, then n: the set sizes the suggestion tries, smallest first."""
    sizes, a, b = [], 1, 2
    while a < n:
        sizes.append(a)
        a, b = b, a + b
    return sizes + [n] if n else []


def log_culprit(model: str, entry: DivergenceEntry) -> None:
    first, by = entry.first_divergent, entry.culprit_by
    if first:
        log(
            "DIVERGE",
            f"{model} {entry.variant}: first divergent layer #{first.index} {first.name} "
            f"(call {first.call}, {first.type}): {by} error "
            f"{first.own if by == 'own' else first.inherited:.3g} > {entry.tolerance:g}, "
            f"{entry.over_tolerance} record(s) over the tolerance",
        )
    else:
        log("DIVERGE", f"{model} {entry.variant}: no layer's {by} error passes {entry.tolerance:g}")
