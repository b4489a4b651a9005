"""Single-pass dissection: every call of every leaf module, numbered in execution order,
files written off the forward pass, strict JSON, hooks always removed."""

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vision_bench.common import atomic_write_json, first_tensor
from vision_bench.inspect.dissection import LayerDissector, feature_planes, token_grid
from vision_bench.inspect.feature_png import render_feature_grid
from vision_bench.inspect.layer_stats import tensor_stats
from vision_bench.records.inspection import CallWithoutTensor, LayerRecord, layer_records


class SharedActivation(nn.Module):
    """A leaf (the activation) called three times per forward, inside nested containers."""

    def __init__(self):
        super().__init__()
        self.act = nn.SiLU()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.body = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(2)])
        self.head = nn.Flatten()

    def forward(self, x):
        x = self.act(self.stem(x))
        for conv in self.body:
            x = self.act(conv(x))
        return self.head(x), {"aux": x}


def count_leaf_calls(network, call) -> int:
    """Counts leaf-module calls with a global hook: independent of the dissector's hooks."""
    leaves = {id(m) for m in network.modules() if next(m.children(), None) is None}
    calls = []
    handle = nn.modules.module.register_module_forward_hook(
        lambda m, a, o: calls.append(1) if id(m) in leaves else None
    )
    try:
        call()
    finally:
        handle.remove()
    return len(calls)


def strict(text):
    def reject(c):
        raise ValueError(c)

    return json.loads(text, parse_constant=reject)


def test_every_call_is_a_record(ub, tmp_path):
    net = SharedActivation().eval()
    x = torch.randn(1, 3, 8, 8)
    expected = count_leaf_calls(net, lambda: net(x))
    dissector = LayerDissector(tmp_path, input_hw=(8, 8))
    summary = dissector.run(net, lambda: net(x))
    assert summary.records == expected == 8  # conv, bn, act, conv, act, conv, act, flatten
    assert [r.index for r in dissector.records] == list(range(expected))
    act = [r for r in dissector.records if r.name == "act"]
    assert [r.call for r in act] == [1, 2, 3]
    assert len({tuple(r.files) for r in act}) == 3  # three distinct files, nothing overwritten
    # a 4-D record gets a PNG and NPY; the flattened 2-D output gets statistics only
    flat = next(r for r in dissector.records if r.type == "Flatten")
    assert flat.files == [] and flat.std is not None
    assert summary.png_files == summary.npy_files == expected - 1
    assert len(list(tmp_path.glob("*.png"))) == expected - 1


def test_record_count_matches_independent_count_on_yolo(ub, tmp_path):
    bench = ub.YOLO11nDetectBenchmark(torch.device("cpu"), weights="random")
    bench.load()
    image = Image.new("RGB", (96, 64), (120, 30, 200))
    bench.run_pipeline(image)  # builds the fused predictor model the tool dissects
    expected = count_leaf_calls(bench.network(), lambda: bench.run_pipeline(image))
    bench.input_shape = None
    summary = bench.dissect_layers(image, tmp_path, write_files=False)
    assert summary.records == expected
    assert summary.records > summary.leaf_modules  # the shared SiLU runs many times
    meta = strict((tmp_path / "layers_metadata.json").read_text())
    assert meta["num_records"] == expected


def test_first_tensor_of_structured_outputs(ub):
    t = torch.ones(2)
    assert first_tensor((None, [t]))[1] == "output[1][0]"
    assert first_tensor({"a": 1, "b": t})[1] == "output['b']"
    assert first_tensor(("text", 3))[0] is None


def test_token_output_is_reshaped_to_patch_grid(ub, tmp_path):
    h, w, c = 6, 8, 20
    grid = torch.arange(h).view(h, 1).expand(h, w).reshape(h * w).float()  # channel 0 = patch row
    tokens = torch.randn(1, 1 + h * w, c)  # one class token first
    tokens[0, 1:, 0] = grid
    planes, note = feature_planes(tokens, input_hw=(h * 14, w * 14))
    assert note and "6x8" in note and "1 leading" in note
    assert tuple(planes.shape) == (16, h, w)
    assert torch.equal(planes[0], grid.view(h, w))

    block = nn.Sequential(nn.Linear(c, c))
    dissector = LayerDissector(tmp_path, input_hw=(h * 14, w * 14))
    dissector.run(block, lambda: block(tokens))
    record = dissector.records[0]
    assert record.reshaped and record.shape == [1, 1 + h * w, c]
    assert record.reshaped_shape == [c, h, w] and record.explorer_json()["reshaped_shape"] == [c, h, w]
    npy = np.load(tmp_path / record.files[1])
    assert npy.shape == (8, h, w)
    with Image.open(tmp_path / record.files[0]) as im:
        # 16 channels in a 4x4 grid of tiles, each upscaled to at least 64 px, 2 px padding
        scale = -(-64 // w)  # ceil: the long side reaches 64 px
        assert im.size == (4 * (w * scale + 2) + 2, 4 * (h * scale + 2) + 2)


def test_token_grid_rejects_non_grids(ub):
    assert token_grid(577, (384, 384)) == (1, 24, 24)
    assert token_grid(1 + 37 * 49, (518, 686)) == (1, 37, 49)
    assert token_grid(5 + 16 * 16, (224, 224)) == (5, 16, 16)  # register tokens
    assert token_grid(7, (1024, 1024)) is None
    assert token_grid(577, None) is None


def test_nan_inf_and_constant_activations_give_strict_json(ub, tmp_path):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.nan = nn.Identity()
            self.const = nn.Identity()
            self.mixed = nn.Identity()

        def forward(self, x):
            self.nan(torch.full_like(x, float("nan")))
            self.const(torch.full_like(x, 3.0))
            y = x.clone()
            y[0, 0, 0, 0], y[0, 0, 0, 1], y[0, 0, 0, 2] = float("nan"), float("inf"), -float("inf")
            return self.mixed(y)

    net = Odd()
    dissector = LayerDissector(tmp_path, input_hw=(4, 4))
    dissector.run(net, lambda: net(torch.randn(1, 2, 4, 4)))
    atomic_write_json(tmp_path / "meta.json", dissector.metadata())
    meta = strict((tmp_path / "meta.json").read_text())["records"]
    nan, const, mixed = meta["000"], meta["001"], meta["002"]
    assert nan["nan_count"] == 32 and nan["min"] is None and nan["std"] is None
    assert const["std"] == 0 and const["min"] == const["max"] == 3.0 and const["zero_fraction"] == 0
    assert mixed["nan_count"] == 1 and mixed["inf_count"] == 2 and mixed["max"] is not None
    for r in meta.values():  # pictures are still written for degenerate maps
        assert all((tmp_path / f).is_file() for f in r["files"])


def test_hooks_removed_and_writers_stopped_after_a_failing_pass(ub, tmp_path):
    net = SharedActivation()
    threads_before = threading.active_count()

    def failing():
        net(torch.randn(1, 3, 8, 8))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        LayerDissector(tmp_path).run(net, failing)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert threading.active_count() == threads_before


def test_file_numbers_widen_when_calls_outnumber_leaves(ub, tmp_path):
    act = nn.ReLU()

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = act

        def forward(self, x):
            for _ in range(1005):
                x = self.act(x)
            return x

    net = Loop()
    dissector = LayerDissector(tmp_path, input_hw=(2, 2))
    dissector.run(net, lambda: net(torch.randn(1, 1, 2, 2)))
    meta = dissector.metadata()
    assert len(meta["records"]) == 1005 and "1004" in meta["records"]
    assert meta["records"]["0007"].files == ["layer_0007.png", "layer_0007.npy"]
    names = {p.name for p in tmp_path.glob("layer_*")}
    assert len(names) == 2010 and "layer_1004.npy" in names and "layer_007.png" not in names


def test_render_feature_grid_handles_tiny_and_large_maps(ub, tmp_path):
    render_feature_grid(np.random.rand(3, 1, 1).astype(np.float32), tmp_path / "tiny.png")
    render_feature_grid(np.random.rand(16, 900, 700).astype(np.float32), tmp_path / "large.png")
    with Image.open(tmp_path / "tiny.png") as im:
        assert im.size == (2 * 66 + 2, 2 * 66 + 2)
    with Image.open(tmp_path / "large.png") as im:
        assert max(im.size) <= 4 * (256 + 2) + 2


def test_statistics_match_a_float64_reference(ub):
    """The all-finite fast path (chunked, float64 accumulation) against numpy in float64."""
    gen = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(1, 32, 300, 200, generator=gen) * 50 + 1000,  # large offset: cancellation risk
        torch.relu(torch.randn(1, 1814, 384, generator=gen)),  # many exact zeros
        torch.randn(3, 5, generator=gen).half(),
        torch.randn(64, 64, generator=gen).t(),
    ]  # non-contiguous
    for t in cases:
        ref = t.double().numpy()
        stats = tensor_stats(t)
        assert stats["min"] == pytest.approx(ref.min()) and stats["max"] == pytest.approx(ref.max())
        assert stats["mean"] == pytest.approx(ref.mean(), rel=1e-5, abs=1e-6)
        assert stats["std"] == pytest.approx(ref.std(), rel=1e-4)
        assert stats["zero_fraction"] == pytest.approx((ref == 0).mean())
        assert stats["nan_count"] == stats["inf_count"] == 0


def test_layers_metadata_keys_of_a_call_without_tensor_and_of_an_empty_tensor(ub, tmp_path):
    """layers_metadata.json as the layer explorer reads it: a call whose output holds no tensor has
    only its note (no statistics' keys), an empty tensor has its statistics as null, and the pass's
    counts come first."""

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.text = Text()
            self.empty = nn.Identity()

        def forward(self, x):
            self.text(x)
            return self.empty(x.reshape(-1)[:0])

    class Text(nn.Module):
        def forward(self, x):
            return "not a tensor"

    net = Odd()
    dissector = LayerDissector(tmp_path, input_hw=(4, 4))
    summary = dissector.run(net, lambda: net(torch.randn(1, 2, 4, 4)))
    atomic_write_json(tmp_path / "meta.json", dissector.metadata(summary, model="odd"))
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert list(meta) == [
        "model",
        "records",
        "leaf_modules",
        "png_files",
        "npy_files",
        "seconds",
        "writer_errors",
        "num_records",
    ]
    text, empty = meta["records"]["000"], meta["records"]["001"]
    assert text == {"index": 0, "name": "text", "call": 1, "type": "Text", "note": text["note"]}
    assert "no tensor" in text["note"]
    assert list(empty) == [
        "index",
        "name",
        "call",
        "type",
        "shape",
        "dtype",
        "min",
        "max",
        "mean",
        "std",
        "zero_fraction",
        "nan_count",
        "inf_count",
        "files",
    ]
    assert empty["min"] is None and empty["zero_fraction"] is None and empty["files"] == []
    assert summary.records == 2 and summary.nan_records == 0 and summary.profile.index == []
    # Read back as the report's explorer reads it: the same keys, a call without a tensor still without
    # its statistics' keys; no drawn shape where nothing was reshaped.
    records = layer_records(meta)
    assert [type(r) for r in records] == [CallWithoutTensor, LayerRecord]
    assert [r.explorer_json() for r in records] == [text, empty]
    assert layer_records({"records": [empty, text]}) == records  # the older list form, sorted by index


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (1, 0, 4, 4), (2, 3, 0, 4), (0, 5, 3)])
def test_an_empty_feature_map_gives_no_planes_and_no_files(ub, tmp_path, shape):
    """A leaf whose output has a zero dimension (an empty batch, no channels): its record has the
    shape and null statistics, no PNG or NPY, and the pass goes on."""
    assert feature_planes(torch.zeros(shape), (4, 4))[0] is None

    class Empty(nn.Module):
        def __init__(self):
            super().__init__()
            self.empty = nn.Identity()
            self.after = nn.ReLU()

        def forward(self, x):
            self.empty(torch.zeros(shape))
            return self.after(x)

    net = Empty()
    dissector = LayerDissector(tmp_path, input_hw=(4, 4))
    summary = dissector.run(net, lambda: net(torch.randn(1, 2, 4, 4)))
    empty, after = dissector.records
    assert empty.shape == list(shape) and empty.min is None and empty.files == []
    assert after.files == ["layer_001.png", "layer_001.npy"]
    assert summary.records == 2 and summary.png_files == 1 and summary.npy_files == 1


def test_feature_png_decodes_to_the_same_pixels_with_isal_or_plain_zlib(ub, tmp_path, monkeypatch):
    """The PNG writer's file is a valid RGB PNG that Pillow and OpenCV decode to the same pixels,
    whichever deflate wrote it; a channel's extremes take the colour map's two ends."""
    import zlib

    import cv2

    from vision_bench.inspect import feature_png

    planes = np.random.default_rng(0).standard_normal((5, 12, 9)).astype(np.float32)
    render_feature_grid(planes, tmp_path / "fast.png")
    monkeypatch.setattr(feature_png, "deflate_module", zlib)
    render_feature_grid(planes, tmp_path / "zlib.png")
    with Image.open(tmp_path / "fast.png") as fast, Image.open(tmp_path / "zlib.png") as plain:
        assert fast.mode == plain.mode == "RGB"
        pixels = np.asarray(fast)
        assert (pixels == np.asarray(plain)).all()
    assert (cv2.imread(str(tmp_path / "fast.png"))[..., ::-1] == pixels).all()
    lut = feature_png.colormap_lut()
    for end in (lut[0], lut[255]):
        assert (pixels == end).all(axis=2).sum() >= 5 * 36  # each channel's min and max, tiles 6x upscaled
