"""The onnxruntime variant's side of --divergence: each leaf call of a network exported by the
TorchScript exporter found in the ONNX graph (a shared module's calls, a repeated call's `_1`, a
wrapper's prefix, Identity and Dropout without a node, a BatchNorm folded into its Conv, a leaf with
two outputs compared at block level, a call folded away), the values ONNX Runtime gives for them equal
to the torch leaf outputs whatever the byte budget, and yolo11n-detect exported by the tool's own path."""

import types
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from vision_bench.divergence.layer_passes import HookedVariant, ReferencePass, hooked_pass
from vision_bench.divergence.onnx_intermediates import intermediate_values, onnx_variant_pass
from vision_bench.divergence.onnx_mapping import NO_NODE, leaf_facts, map_leaf_outputs, value_types
from vision_bench.divergence.reference_store import ReferenceStore
from vision_bench.records.divergence import OnnxRuns

CPU = torch.device("cpu")


class Block(nn.Module):
    def __init__(self, channels, act):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), act
        self.drop, self.ident = nn.Dropout(0.1), nn.Identity()

    def forward(self, x):
        return self.ident(self.drop(self.act(self.bn(self.conv(x))))) + x


class Split(nn.Module):
    """A leaf with two outputs: which one the hook sees, the graph cannot tell."""

    def forward(self, x):
        return x[:, :4] * 2, x[:, 4:] + 1


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.split, self.out = Split(), nn.Tanh()

    def forward(self, x):
        a, b = self.split(x)
        return self.out(a * b)


class Tiny(nn.Module):
    """`act` is one module called four times (from the top and, as `blocks.N.act`, from each block);
    `gate` once on a constant (folded by the exporter) and once on data."""

    def __init__(self):
        super().__init__()
        self.stem, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.SiLU()
        self.blocks = nn.ModuleList([Block(8, self.act), Block(8, self.act)])
        self.gate, self.pair = nn.Sigmoid(), Pair()
        self.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GELU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.act(self.stem(x))
        for block in self.blocks:
            x = block(x)
        x = self.act(x) * self.gate(torch.ones(1, 8, 1, 1))
        return self.fc(self.head(self.gate(self.pair(x))).mean((2, 3)))


class Wrapper(nn.Module):
    """As HFDepthBenchmark.export_onnx: the network under `model`, so every scope starts with /model/."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The network, its export, its input, and each leaf call's torch output in execution order."""
    torch.manual_seed(0)
    network = Tiny().eval()
    for block in network.blocks:  # running statistics that change the values
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    x = torch.randn(1, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper(network).eval(),
            (x,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            opset_version=17,
            dynamo=False,
        )
    network.eval()
    facts = leaf_facts(network)
    outputs, calls = {}, {}

    def hook(name):
        def keep(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            outputs[(name, calls[name])] = (output[0] if isinstance(output, tuple) else output).detach().numpy().copy()

        return keep

    handles = [m.register_forward_hook(hook(n)) for n, m in network.named_modules() if n in facts.leaves]
    with torch.no_grad():
        network(x)
    for h in handles:
        h.remove()
    import onnx

    model = onnx.load(str(path))
    return {
        "network": network,
        "path": path,
        "x": x,
        "facts": facts,
        "outputs": outputs,
        "order": list(outputs),
        "model": model,
        "typed": value_types(model, {"x": x.numpy()}),
    }


def mapped(tiny):
    facts = tiny["facts"]
    return map_leaf_outputs(
        tiny["model"], facts.leaves, aliases=facts.aliases, types=facts.types, order=tiny["order"], typed=tiny["typed"]
    )


def test_each_leaf_call_is_found_in_the_graph_and_the_others_say_why(tiny):
    mapping = mapped(tiny)
    assert mapping.prefix == "model."
    leaf = {(t.name, t.call): t.value for t in mapping.targets if t.level == "leaf"}
    assert set(leaf) == {
        ("stem", 1),
        ("act", 1),
        ("act", 2),
        ("act", 3),
        ("act", 4),
        ("blocks.0.bn", 1),
        ("blocks.1.bn", 1),
        ("pair.out", 1),
        ("head.0", 1),
        ("head.1", 1),
        ("fc", 1),
    }
    # the shared SiLU: named under each call site, and `_1` for its second call from the top
    assert [leaf[("act", k)].rsplit("/", 1)[0] for k in (1, 2, 3, 4)] == [
        "/model/act",
        "/model/blocks.0/act",
        "/model/blocks.1/act",
        "/model/act_1",
    ]
    assert leaf[("fc", 1)] == "y"  # a graph output
    assert leaf[("blocks.0.bn", 1)] == "/model/blocks.0/conv/Conv_output_0"
    why = {(u.name, u.call): u.reason for u in mapping.unmapped}
    assert {k for k, v in why.items() if v == NO_NODE} == {
        (f"blocks.{b}.{m}", 1) for b in (0, 1) for m in ("drop", "ident")
    }
    assert "folded the BatchNorm" in why[("blocks.0.conv", 1)] and "folded the BatchNorm" in why[("blocks.1.conv", 1)]
    assert "1 scopes in the graph for 2 torch calls" in why[("gate", 1)] and ("gate", 2) in why
    [fallback] = mapping.fallbacks
    assert fallback.block == "pair" and fallback.reference == ["pair.out", 1]
    assert fallback.records == [["pair.split", 1]] and fallback.reason.startswith("several values")
    report = mapping.report()
    assert (report.records, report.leaf, report.block, report.unmapped) == (20, 11, 1, 8)
    assert report.records == len(tiny["order"])


def test_the_values_are_the_torch_leaf_outputs_and_a_small_budget_only_adds_runs(tiny):
    mapping, feeds = mapped(tiny), {"x": tiny["x"].numpy()}
    one = OnnxRuns()
    whole = {(n, c): a for n, c, a, _ in intermediate_values(tiny["model"], mapping.targets, feeds, report=one)}
    assert one.runs == 1 and one.unknown_sizes == 0 and one.fetched_bytes == one.estimated_bytes
    assert set(whole) == {(t.name, t.call) for t in mapping.targets}
    for key, value in whole.items():
        np.testing.assert_allclose(value, tiny["outputs"][key], rtol=0, atol=1e-5, err_msg=str(key))
    budget, small = 20000, OnnxRuns()  # values of 8 KB and 4 KB: two or three a run
    split = {
        (n, c): a for n, c, a, _ in intermediate_values(tiny["model"], mapping.targets, feeds, budget, report=small)
    }
    assert small.runs >= 4 and small.largest_run_bytes <= budget
    assert small.fetched_bytes == one.fetched_bytes
    for key, value in split.items():
        np.testing.assert_allclose(value, whole[key], rtol=0, atol=1e-6, err_msg=str(key))
    assert [o.name for o in tiny["model"].graph.output] == ["y"]  # the added outputs are gone again


def test_the_variant_pass_fills_the_reference_records(tiny, tmp_path):
    network = tiny["network"]
    store = ReferenceStore(tmp_path)
    try:
        reference = ReferencePass(HookedVariant("onnxruntime", 1e-3), store, shadow=False)
        hooked_pass(network, reference.hook, lambda: network(tiny["x"]), with_kwargs=True)
        store.flush()
        bench = types.SimpleNamespace(network=lambda: network, device=CPU)
        out = onnx_variant_pass(bench, tiny["path"], tiny["x"], None, store, reference.records, budget=20000)
    finally:
        store.close()
    records = {(r.name, r.call): r for r in reference.records}
    assert (out.leaf, out.block, out.unmapped, out.compared) == (11, 1, 8, 11)
    assert out.runs.runs > 1 and "11 of 20 record(s) compared at leaf level" in out.level_note
    for key in [("stem", 1), ("act", 4), ("blocks.1.bn", 1), ("fc", 1)]:
        assert records[key].propagated.relative_l2 < 1e-5 and records[key].level is None
    split = records[("pair.split", 1)]
    assert split.level == "block" and split.block == "pair" and split.block_reference == ["pair.out", 1]
    assert split.propagated == records[("pair.out", 1)].propagated
    assert records[("blocks.0.drop", 1)].onnx_unmapped == NO_NODE and records[("gate", 2)].propagated is None
    assert "BatchNorm folded in" in records[("blocks.0.bn", 1)].onnx_note


def test_yolo11n_detect_exported_by_the_tool_maps_at_leaf_level(ub, tmp_path):
    from vision_bench.common import first_tensor, seed_everything
    from vision_bench.images import bundled_sample_images, load_rgb
    from vision_bench.variants.onnxruntime import prepare_onnxruntime

    seed_everything(42)
    bench = ub.MODELS_BY_CLI_NAME["yolo11n-detect"](CPU, weights="random", models_dir=tmp_path)
    bench.load()
    image = load_rgb(bundled_sample_images()[0])
    store, seen = ReferenceStore(tmp_path), {}

    def capture(module, args, kwargs):
        seen.setdefault("x", first_tensor((list(args), kwargs))[0].detach().clone())

    try:
        reference = ReferencePass(HookedVariant("onnxruntime", 1e-3), store, shadow=False)
        handle = bench.input_module().register_forward_pre_hook(capture, with_kwargs=True)
        hooked_pass(bench.network(), reference.hook, lambda: bench.run_pipeline(image), with_kwargs=True)
        handle.remove()
        store.flush()
        facts = leaf_facts(bench.network())  # before the variant replaces the torch network
        [path] = prepare_onnxruntime(bench, [image]).files or []
        out = onnx_variant_pass(bench, path, seen["x"], "images", store, reference.records, facts=facts)
    finally:
        store.close()
    print(out.level_note, out.runs)
    assert out.records == len(reference.records) == 178 and out.prefix == ""
    assert (out.leaf, out.block, out.unmapped) == (174, 0, 4) and out.runs.runs == 1
    assert {facts.types[u.name] for u in out.unmapped_records} == {"Identity"}
    shared = [r for r in reference.records if r.name == "model.0.act"]  # one SiLU, every Conv's
    assert len(shared) > 70 and all(r.propagated is not None for r in shared)
    errors = [r.propagated.relative_l2 for r in reference.records if r.propagated is not None]
    assert len(errors) == 174 and max(errors) < 1e-4
