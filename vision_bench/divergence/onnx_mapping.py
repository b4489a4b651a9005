"""Which value of an exported ONNX graph is each leaf call's output (the mapping the exported variants'
--divergence passes fetch by, divergence.onnx_intermediates): an ONNX file has no hooks, so each leaf
call's output is found in the graph by the names the exporter gives its nodes.

The TorchScript exporter (torch.onnx.export(dynamo=False)) names a node `/<scope>/.../<Op>[_n]`, one
scope per module *call*, a scope being the module's first name in the exported module's
named_modules() from its last non-numeric atom on (`model.2.m.0` -> `m.0`). Another call giving the
same scope string gets `_1`, `_2`, ... on its last atom (so does each child of a repeated block:
`/b/conv_1` under `/b_1`); a shared module is named under its call site (ultralytics' one SiLU:
`/model.1/act`, `/model.2/cv1/act`). So a scope is resolved atom by atom against the network's
module paths and aliases, under the prefix that aligns the exported names with the hooked network's
(`model.` for a wrapper: the one that resolves the most leaves), and a module's calls are its scopes
in graph order, which is the trace's. A leaf call's value is the one floating-point value leaving its
scope (consumed outside it, or a graph output). No node: an Identity, a Dropout at inference, or
folded; the exporter folds a BatchNorm into the Conv before it, whose value is then the BatchNorm's.
Several values leaving, or not one scope per torch call: ambiguous, see block_fallback.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..common import leaf_modules, log
from ..records.divergence import OnnxBlock, OnnxSummary, OnnxUnmapped

ELEMENT_BYTES = {1: 4, 10: 2, 16: 2, 11: 8}  # TensorProto FLOAT, FLOAT16, BFLOAT16, DOUBLE
UNIQUE_SUFFIX = re.compile(r"^(.*)_(\d+)$")
NO_NODE = "no node in the graph (an identity at inference, or folded into a constant)"


@dataclass
class Target:
    """An ONNX value and the reference record (name, call) it is compared with; level "block": the
    value ends `block` and the record is that of the leaf call making it."""

    name: str
    call: int
    value: str
    level: str = "leaf"
    block: str | None = None
    note: str | None = None


@dataclass
class OnnxMapping:
    prefix: str
    targets: list[Target] = field(default_factory=list)
    fallbacks: list[OnnxBlock] = field(default_factory=list)
    unmapped: list[OnnxUnmapped] = field(default_factory=list)
    unresolved_scopes: list[str] = field(default_factory=list)

    def report(self) -> OnnxSummary:
        leaf = sum(t.level == "leaf" for t in self.targets)
        block = len({tuple(r) for f in self.fallbacks for r in f.records})
        return OnnxSummary(
            prefix=self.prefix,
            records=leaf + block + len(self.unmapped),
            leaf=leaf,
            block=block,
            unmapped=len(self.unmapped),
            blocks=self.fallbacks,
            unmapped_reasons=dict(Counter(u.reason for u in self.unmapped)),
            unmapped_records=self.unmapped[:40],
            unresolved_scopes=self.unresolved_scopes[:20],
        )


@dataclass
class LeafFacts:
    """What the mapping needs of the torch network, taken while it is there."""

    leaves: list[str]  # the leaf paths, as the hooks name them
    aliases: dict[str, str] = field(default_factory=dict)  # every other path of a module -> its first path
    types: dict[str, str] = field(default_factory=dict)  # leaf path -> the module's class name


def leaf_facts(network) -> LeafFacts:
    """From the torch network: its leaf paths (as the hooks name them), every other path a module is
    reachable by -> its first path (shared modules), the leaves' types."""
    first: dict[int, str] = {}
    for path, module in network.named_modules():
        first.setdefault(id(module), path)
    aliases = {p: first[id(m)] for p, m in network.named_modules(remove_duplicate=False) if first[id(m)] != p}
    leaves = leaf_modules(network)
    return LeafFacts([n for n, _ in leaves], aliases, {n: type(m).__name__ for n, m in leaves})


# -- the graph ------------------------------------------------------------------------------------
class _Graph:
    def __init__(self, model, typed: dict | None = None):
        self.nodes = list(model.graph.node)
        self.outputs = {o.name for o in model.graph.output}
        self.types = typed or {}
        self.consumers = defaultdict(set)
        self.scope_nodes = defaultdict(list)  # scope string -> node indices, in graph order
        for i, node in enumerate(self.nodes):
            for name in list(node.input) + subgraph_inputs(node):
                self.consumers[name].add(i)
            if node.name.startswith("/"):
                self.scope_nodes[node.name.rsplit("/", 1)[0]].append(i)

    def under(self, scope: str) -> list[int]:
        return sorted(
            i for s, nodes in self.scope_nodes.items() if s == scope or s.startswith(scope + "/") for i in nodes
        )

    def end(self, members: list[int]):
        """((node index, value), None): the one floating-point (or untyped) value leaving these nodes;
        else (None, why), why starting with "several" when more than one leaves."""
        inside, leaving = set(members), []
        for i in members:
            for v in self.nodes[i].output:
                if (
                    v
                    and self.types.get(v, (None,))[0] in (None, *ELEMENT_BYTES)
                    and (v in self.outputs or self.consumers[v] - inside)
                ):
                    leaving.append((i, v))
        if len(leaving) == 1:
            return leaving[0], None
        if not leaving:
            return None, "no floating-point value leaves its scope (folded)"
        return None, f"several values leave its scope ({', '.join(v for _, v in leaving[:3])})"


def subgraph_inputs(node) -> list[str]:
    names = []
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in g.node:
                names += list(inner.input) + subgraph_inputs(inner)
    return names


def value_types(model, feeds: dict) -> dict:
    """{value: (element type, dims or None)}: ONNX shape inference at the fed shapes, on a light copy of
    the graph whose large weights are typed inputs (their values are not needed)."""
    import onnx
    from onnx import helper

    g = model.graph
    small = [t for t in g.initializer if t.data_type not in ELEMENT_BYTES or np.prod(t.dims) <= 1024]
    kept = {t.name for t in small}
    inputs = [
        helper.make_tensor_value_info(i.name, i.type.tensor_type.elem_type, feeds[i.name].shape)
        if i.name in feeds
        else i
        for i in g.input
        if i.name not in kept
    ]
    named = {i.name for i in inputs}
    inputs += [
        helper.make_tensor_value_info(t.name, t.data_type, t.dims)
        for t in g.initializer
        if t.name not in kept and t.name not in named
    ]
    light = helper.make_model(
        helper.make_graph(g.node, g.name, inputs, g.output, small),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    try:
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True).graph
    except Exception as exc:  # noqa: BLE001  (no types: every value may be floating-point, sizes measured)
        log("DIVERGE", f"ONNX shape inference failed ({type(exc).__name__}): value sizes are measured")
        return {}
    out: dict[str, tuple] = {t.name: (t.data_type, list(t.dims)) for t in small}
    for vi in list(inferred.value_info) + list(inferred.output) + list(inferred.input):
        t = vi.type.tensor_type
        dims = (
            [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else [None]
        )
        out[vi.name] = (t.elem_type or None, None if None in dims else dims)
    return out


# -- the scopes -----------------------------------------------------------------------------------
def resolve_scope(chain: list[str], index: dict) -> str | None:
    """The module path a scope's atoms name: each atom ends a path under the one resolved so far, the
    nearest (two as near: ambiguous, None); the last atom may carry the exporter's `_n`."""
    parent = ""
    for k, atom in enumerate(chain):
        repeated = UNIQUE_SUFFIX.match(atom) if k == len(chain) - 1 else None
        for option in [atom] + ([repeated.group(1)] if repeated else []):
            found = [c for c in index.get(option, ()) if not parent or c.startswith(parent + ".")]
            if found:
                nearest = [c for c in found if c.count(".") == min(c.count(".") for c in found)]
                if len(nearest) > 1:
                    return None
                parent = nearest[0]
                break
        else:
            return None
    return parent


def resolve_all(scopes, paths, leaves: set) -> tuple[str, dict]:
    """{scope string: path or None} under the prefix (leading atoms dropped) that resolves the most leaves."""
    index = defaultdict(list)
    for p in paths:
        atoms = p.split(".")
        for k in range(len(atoms)):
            index[".".join(atoms[k:])].append(p)
    chains = {s: s.split("/")[1:] for s in scopes if s}
    best: tuple[int, str, dict] = (-1, "", {})
    for k in range(3):
        heads = Counter(tuple(c[:k]) for c in chains.values() if len(c) > k)
        if not heads:
            break
        head = heads.most_common(1)[0][0]
        resolved = {s: resolve_scope(c[k:], index) for s, c in chains.items() if len(c) > k and tuple(c[:k]) == head}
        score = sum(p in leaves for p in resolved.values())
        if score > best[0]:
            best = (score, "".join(a + "." for a in head), resolved)
    return best[1], best[2]


# -- the mapping ----------------------------------------------------------------------------------
def map_leaf_outputs(
    model,
    leaves: list[str],
    *,
    aliases: dict | None = None,
    types: dict | None = None,
    order: list[tuple[str, int]] | None = None,
    typed: dict | None = None,
) -> OnnxMapping:
    """Each leaf call (name, call) -> the ONNX value that is its output. `aliases`, `types`: leaf_facts();
    `order`: the torch leaf calls in execution order (the reference records: the number of calls of
    each leaf, and what precedes a BatchNorm); `typed`: value_types(), which leaves integers out."""
    aliases, types = aliases or {}, types or {}
    graph = _Graph(model, typed)
    paths = {".".join(p.split(".")[:k]) for p in list(leaves) + list(aliases) for k in range(1, p.count(".") + 2)}
    prefix, resolved = resolve_all(graph.scope_nodes, paths, set(leaves))
    instances = defaultdict(list)  # module -> its scopes in graph (= call) order
    for scope in sorted(resolved, key=lambda s: graph.scope_nodes[s][0]):
        if resolved[scope] is not None:
            instances[aliases.get(resolved[scope], resolved[scope])].append(scope)
    unresolved = [s for s, p in resolved.items() if p is None]
    order = order or [(n, c + 1) for n in leaves for c in range(max(1, len(instances.get(n, ()))))]
    calls = Counter(n for n, _ in order)
    mapping = OnnxMapping(prefix, unresolved_scopes=unresolved)
    ends, ambiguous = {}, []
    for name, call in order:
        found, why = instances.get(name, []), None
        if not found:
            last = name.rsplit(".", 1)[-1]
            if any(UNIQUE_SUFFIX.sub(r"\1", s.rsplit("/", 1)[-1]) == last for s in unresolved):
                ambiguous.append((name, call, "a scope of this name could not be resolved to one module"))
            else:
                why = NO_NODE
        elif len(found) != calls[name]:
            ambiguous.append((name, call, f"{len(found)} scopes in the graph for {calls[name]} torch calls"))
        else:
            ends[(name, call)], why = graph.end(graph.scope_nodes[found[call - 1]])
            if why:
                del ends[(name, call)]
                if why.startswith("several"):
                    ambiguous.append((name, call, why))
                    why = None
        if why:
            mapping.unmapped.append(OnnxUnmapped(name, call, why))
    notes = fold_batchnorms(graph, order, ends, mapping, types, prefix)
    mapping.targets = [Target(n, c, v, note=notes.get((n, c))) for (n, c), (_, v) in ends.items()]
    block_fallback(graph, resolved, instances, calls, ambiguous, mapping, aliases)
    position = {key: i for i, key in enumerate(order)}
    mapping.targets.sort(key=lambda t: position.get((t.name, t.call), 0))
    return mapping


def fold_batchnorms(graph, order, ends, mapping, types, prefix) -> dict:
    """A BatchNorm call without a node right after a call whose value comes from a Conv whose weights
    are not its own: the exporter folded the BatchNorm into the Conv, whose value is the BatchNorm's
    output; the Conv's own output is nowhere in the graph."""
    notes, no_node = {}, {(u.name, u.call) for u in mapping.unmapped if u.reason == NO_NODE}
    for before, key in itertools.pairwise(order):
        if before not in ends or key not in no_node or "BatchNorm" not in types.get(key[0], "BatchNorm"):
            continue
        node = graph.nodes[ends[before][0]]
        if node.op_type == "Conv" and node.input[1] != f"{prefix}{before[0]}.weight":
            ends[key] = ends.pop(before)
            notes[key] = f"the value of the Conv of {before[0]} (call {before[1]}), BatchNorm folded in"
            mapping.unmapped = [u for u in mapping.unmapped if (u.name, u.call) != key]
            mapping.unmapped.append(
                OnnxUnmapped(before[0], before[1], "the exporter folded the BatchNorm after it into its Conv")
            )
    return notes


def block_fallback(graph, resolved, instances, calls, ambiguous, mapping, aliases) -> None:
    """An ambiguous leaf call -> its nearest enclosing block that (a) has one scope in the graph (called
    once), (b) contains every call of the leaf, (c) has one value leaving it and (d) that value is made
    by a leaf call we can name (its scope is that leaf's, whose call index is known): the block returns
    that leaf call's output. The block's value is compared with that leaf call's reference, and the
    figures stand, at block level, for every ambiguous call inside. No such block: not mapped."""
    groups: dict[str, OnnxBlock] = {}
    for name, call, why in ambiguous:
        atoms, chosen = name.split("."), None
        mine = instances.get(name, [])
        for depth in range(len(atoms) - 1, 0, -1):
            block = ".".join(atoms[:depth])
            scopes = instances.get(block, [])
            end = graph.end(graph.under(scopes[0]))[0] if len(scopes) == 1 else None
            if end is None or not (
                calls[name] == 1 or len(mine) == calls[name] and all(s.startswith(scopes[0] + "/") for s in mine)
            ):
                continue
            scope = graph.nodes[end[0]].name.rsplit("/", 1)[0]
            last = aliases.get(resolved.get(scope), resolved.get(scope))
            made_by = instances.get(last, [])
            if last in calls and scope in made_by and (len(made_by) == calls[last] or calls[last] == 1):
                chosen = (block, last, made_by.index(scope) + 1 if calls[last] > 1 else 1, end[1])
                break
        if chosen is None:
            mapping.unmapped.append(
                OnnxUnmapped(name, call, f"ambiguous ({why}); no enclosing block called once ends in a leaf's output")
            )
            continue
        block, last, last_call, value = chosen
        group = groups.setdefault(block, OnnxBlock(block, [last, last_call], reason=why))
        group.records.append([name, call])
        if not any(t.name == last and t.call == last_call for t in mapping.targets):
            mapping.targets.append(Target(last, last_call, value, "block", block))
    mapping.fallbacks = list(groups.values())


def nearest_mapped_inputs(model, values: set[str]) -> dict[str, set[str]]:
    """{value of `values`: the values of `values` nearest upstream of it}: its node's inputs, followed back
    through values not in `values` (weights and graph inputs end a path)."""
    made_by = {out: node for node in model.graph.node for out in node.output}
    nearest: dict[str, set[str]] = {}
    for value in values:
        found: set[str] = set()
        todo, seen = list(made_by[value].input) if value in made_by else [], set()
        while todo:
            v = todo.pop()
            if v in seen or v not in made_by:
                continue
            seen.add(v)
            if v in values:
                found.add(v)
            else:
                todo.extend(made_by[v].input)
        nearest[value] = found
    return nearest
