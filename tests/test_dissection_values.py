"""The dissection's files hold the right values: the NPY is the activation it came from
(batch element 0, first channels), token sequences land on the right (C, h, w) grid, and
every PNG tile is normalised on its own, spanning the colour map from end to end."""

import numpy as np
import torch
from PIL import Image
from torch import nn

from vision_bench.inspect.dissection import LayerDissector


def viridis_ends() -> tuple[np.ndarray, np.ndarray]:
    """The colours of viridis at 0 and 1, from matplotlib directly."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return tuple((np.asarray(cmap(v)[:3]) * 255).astype(np.uint8) for v in (0.0, 1.0))


def tiles(png_path) -> list[np.ndarray]:
    """The channel tiles of a feature-grid PNG in reading order, found from the white padding
    (viridis has no white), so the test does not repeat the tool's layout arithmetic."""
    with Image.open(png_path) as im:
        rgb = np.asarray(im.convert("RGB"))
    painted = (rgb != 255).any(axis=2)

    def runs(mask_1d):
        edges = np.flatnonzero(np.diff(np.r_[0, mask_1d.astype(int), 0]))
        return list(zip(edges[::2], edges[1::2]))

    found = []
    for y0, y1 in runs(painted.any(axis=1)):
        for x0, x1 in runs(painted[y0:y1].any(axis=0)):
            found.append(rgb[y0:y1, x0:x1])
    return found


def has_colour(tile: np.ndarray, colour: np.ndarray) -> bool:
    return bool((tile == colour).all(axis=2).any())


def test_npy_is_the_first_conv_output_of_batch_element_0(ub, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 5, 3, padding=1)).eval()
    x = torch.randn(2, 3, 10, 14)
    copied = {}
    # An independent hook, registered before the dissector's: what the first conv really returned.
    handle = net[0].register_forward_hook(lambda m, a, out: copied.setdefault("out", out.detach().clone()))
    try:
        dissector = LayerDissector(tmp_path, input_hw=(10, 14))
        with torch.inference_mode():
            dissector.run(net, lambda: net(x))
    finally:
        handle.remove()
    first = dissector.records[0]
    assert first.name == "0" and first.type == "Conv2d" and first.shape == [2, 12, 10, 14]
    saved = np.load(tmp_path / "layer_000.npy")
    expected = copied["out"][0, :8].numpy()
    assert saved.shape == (8, 10, 14) and saved.dtype == np.float32
    np.testing.assert_array_equal(saved, expected)
    # and not batch element 1 (the two differ: random input)
    assert not np.allclose(saved, copied["out"][1, :8].numpy())
    # the last conv has fewer channels than the NPY limit: all of them are saved
    np.testing.assert_array_equal(np.load(tmp_path / "layer_002.npy"), net(x)[0].detach().numpy())


def test_token_grid_values_land_in_the_right_place(ub, tmp_path):
    """1 class token + a 4x6 patch grid (input 56x84, aspect 2:3), 10 channels; each value
    names its token and channel, so a transposed or shifted grid shows."""
    lead, h, w, channels = 1, 4, 6, 10
    tokens = torch.zeros(1, lead + h * w, channels)
    for t in range(lead + h * w):
        for c in range(channels):
            tokens[0, t, c] = 1000 * c + t
    net = nn.Sequential(nn.Identity())
    dissector = LayerDissector(tmp_path, input_hw=(56, 84))
    dissector.run(net, lambda: net(tokens))
    record = dissector.records[0]
    assert "4x6" in record.reshaped and "1 leading" in record.reshaped
    planes = np.load(tmp_path / record.files[1])
    assert planes.shape == (8, h, w)
    for c in range(8):
        for i in range(h):
            for j in range(w):
                # patch (i, j) in row-major order is token lead + i * w + j
                assert planes[c, i, j] == 1000 * c + lead + i * w + j, (c, i, j)


def test_each_png_tile_spans_the_colour_map(ub, tmp_path):
    """Channels on wildly different scales and one constant channel: each tile is normalised
    on its own, so every non-constant tile shows both ends of viridis; the constant one is flat."""
    rng = np.random.default_rng(3)
    maps = np.stack(
        [rng.standard_normal((10, 15)) * 10.0**k + 5 * k for k in range(-3, 3)] + [np.full((10, 15), 7.0)]
    ).astype(np.float32)  # 7 channels, the last constant
    x = torch.from_numpy(maps)[None]
    net = nn.Sequential(nn.Identity())
    dissector = LayerDissector(tmp_path, input_hw=(10, 15))
    dissector.run(net, lambda: net(x))
    low, high = viridis_ends()
    found = tiles(tmp_path / dissector.records[0].files[0])
    assert len(found) == 7
    for i, tile in enumerate(found[:6]):
        assert has_colour(tile, low) and has_colour(tile, high), f"tile {i} does not span viridis"
    flat = found[6]
    assert (flat == flat[0, 0]).all() and has_colour(flat, low)


def test_each_png_tile_spans_the_colour_map_on_a_conv_output(ub, tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1)).eval()
    dissector = LayerDissector(tmp_path, input_hw=(12, 20))
    dissector.run(net, lambda: net(torch.randn(2, 3, 12, 20)))
    low, high = viridis_ends()
    found = tiles(tmp_path / "layer_000.png")
    assert len(found) == 16
    for i, tile in enumerate(found):
        assert has_colour(tile, low) and has_colour(tile, high), f"tile {i} does not span viridis"
