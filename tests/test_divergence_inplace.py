"""--divergence on networks built the way torchvision and timm build them: in-place activations (one ReLU
instance called several times, ReLU6, Hardswish, SiLU), `out += identity` residuals and concatenations
inside containers. Each container's own error is known: exactly 0 where its own operations are exact in
the variant, the error of its one bf16 operation where it has one, and no figure (with why) where its
forward wrote into its own input."""

import torch
from test_divergence import Bench, add_error
from torch import nn

from vision_bench.divergence.container_ops import COMPOSITION
from vision_bench.divergence.layer_passes import AutocastVariant, ChannelsLastVariant, HookedVariant, run_divergence

BF16_TOLERANCE = 2 * 2**-7


def conv_bn(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out))


class BasicBlock(nn.Module):
    """torchvision's ResNet block: one in-place ReLU instance (shared here with the whole network) called
    twice, the shortcut added in place."""

    def __init__(self, channels: int, relu: nn.Module):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = relu

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ConcatBlock(nn.Module):
    """timm-style: two branches ending in in-place ReLU6 and Hardswish, concatenated, fused, an in-place
    SiLU, the input added in place."""

    def __init__(self, channels: int):
        super().__init__()
        self.branch_a = nn.Sequential(*conv_bn(channels, channels), nn.ReLU6(inplace=True))
        self.branch_b = nn.Sequential(*conv_bn(channels, channels), nn.Hardswish(inplace=True))
        self.fuse = nn.Conv2d(2 * channels, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        y = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        y = self.act(self.fuse(y))
        y += x
        return y


class InPlaceNet(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(BasicBlock(channels, self.relu), BasicBlock(channels, self.relu))
        self.concat = ConcatBlock(channels)
        self.head = nn.Conv2d(channels, 4, 1)

    def forward(self, x):
        return self.head(self.concat(self.blocks(self.relu(self.stem(x)))))


def in_place_bench(seed: int) -> Bench:
    torch.manual_seed(seed)
    network = InPlaceNet()
    for module in network.modules():  # statistics that are not the identity, so the norms compute
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return Bench(network, torch.randn(1, 3, 16, 16))


def ops_by_name(out) -> dict:
    return {(r.name, r.call): r for r in out.ops_records}


def test_channels_last_names_no_culprit_and_the_in_place_containers_add_nothing_of_their_own():
    out = run_divergence(in_place_bench(0), ChannelsLastVariant("torch-channels-last", 1e-4), image=None)
    assert out.first_divergent is None and out.over_tolerance == 0
    ops = ops_by_name(out)
    assert {"blocks.0", "blocks.1", "concat", "blocks", "InPlaceNet"} <= {name for name, _ in ops}
    assert all(r.own == 0 for r in out.ops_records), [(r.name, r.own, r.note) for r in out.ops_records]
    assert max(r.own for r in out.records if r.own is not None) < 1e-4


def test_bf16_names_no_container_and_its_largest_own_error_is_bf16_rounding_at_a_leaf():
    out = run_divergence(in_place_bench(1), AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE), image=None)
    assert out.first_divergent is None
    # the residual adds and the concatenation are not lowered by autocast: exact
    assert all(r.own == 0 for r in out.ops_records), [(r.name, r.own, r.note) for r in out.ops_records]
    worst = out.top_own[0]
    assert worst.kind == "leaf" and 1e-4 < worst.own < BF16_TOLERANCE


def test_a_planted_fault_inside_an_in_place_block_is_the_culprit_and_its_container_stays_exact():
    out = run_divergence(in_place_bench(2), HookedVariant("planted", 1e-4, {"blocks.1.conv2": add_error}), image=None)
    assert (out.first_divergent.name, out.first_divergent.kind) == ("blocks.1.conv2", "leaf")
    assert out.over_tolerance == 1
    assert ops_by_name(out)["blocks.1", 1].own == 0


class MatmulBlock(nn.Module):
    """Own operations of which one is lowered to bf16 by autocast (a matmul), between an in-place ReLU
    and an in-place residual add."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(width, width)

    def forward(self, x):
        p = self.proj(x)
        y = self.out(self.act(p @ p.transpose(-1, -2)))
        y += p
        return y


def test_a_container_whose_own_matmul_runs_in_bf16_is_replayed_to_the_error_of_that_matmul():
    torch.manual_seed(3)
    block, x = MatmulBlock(), torch.randn(16, 16)
    out = run_divergence(
        Bench(nn.Sequential(block), x), AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE), image=None
    )
    with torch.no_grad():
        p = block.proj(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lowered = p @ p.T
        expected = block.out(torch.relu(lowered.float())) + p
        reference = block.out(torch.relu(p @ p.T)) + p
    own = float((expected - reference).norm() / reference.norm())
    record = ops_by_name(out)["0", 1]
    assert record.zero_because is None  # replayed, not taken for a composition
    assert 1e-4 < own and abs(record.own - own) <= 1e-3 * own


class WritesItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x):
        x.mul_(2)
        return self.linear(x)


def test_a_container_that_writes_into_its_input_is_not_replayed_and_a_composition_is_exact_without_replay():
    torch.manual_seed(4)
    network = nn.Sequential(nn.Linear(8, 8), WritesItsInput(), nn.Sequential(nn.ReLU(inplace=True), nn.Linear(8, 8)))
    bench = Bench(network, torch.randn(2, 8))
    out = run_divergence(bench, AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE), image=None)
    ops = ops_by_name(out)
    assert ops["1", 1].own is None and "in place" in ops["1", 1].note
    for composition in [("2", 1), ("Sequential", 1)]:  # an in-place ReLU on its input; the root
        assert ops[composition].own == 0 and ops[composition].zero_because == COMPOSITION


def test_a_module_exact_by_construction_is_recorded_as_zero_with_why_and_a_planted_one_is_still_called():
    torch.manual_seed(5)
    network = nn.Sequential(nn.Linear(16, 16), nn.SiLU(), nn.BatchNorm1d(16), nn.Dropout(), nn.Linear(16, 16))
    bench = Bench(network, torch.randn(8, 16))
    out = run_divergence(bench, AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE), image=None)
    records = {r.name: r for r in out.records}
    for name in ("1", "2", "3"):  # SiLU, BatchNorm, Dropout: autocast lowers none of their operations
        assert records[name].own == 0 and "autocast" in records[name].zero_because
        assert records[name].propagated is not None  # still compared in the variant pass
    assert records["0"].zero_because is None and records["0"].own > 0  # a Linear: called, bf16 rounding
    planted = AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE, overrides={"1": add_error})
    out = run_divergence(Bench(network, torch.randn(8, 16)), planted, image=None)
    assert out.first_divergent.name == "1" and out.first_divergent.own > BF16_TOLERANCE


def test_channels_last_calls_only_the_modules_with_a_4d_weight_or_input_that_compute():
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.SiLU(), nn.Flatten(), nn.Linear(36, 2))
    out = run_divergence(Bench(network, torch.randn(1, 3, 9, 9)), ChannelsLastVariant("cl", 1e-4), image=None)
    because = {r.name: r.zero_because for r in out.records}
    assert because["0"] is None and because["3"] is None  # a convolution, a SiLU on a 4-D input: called
    assert "moves or selects" in because["1"] and "moves or selects" in because["2"] and because["4"]
    assert "no 4-D" in because["5"]
    assert all(r.own == 0 and r.zero_because for r in out.ops_records)  # replays are the reference's computation
