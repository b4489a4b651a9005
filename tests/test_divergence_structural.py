"""--divergence skips a container's replay when its own operations are provably exact in the variant
(autocast: none of the torch functions its own code ran is one autocast lowers), and still records it, as
exactly 0 with why. A container whose own code runs a lowered or an unknown operation, or that carries an
override, is still replayed."""

import pytest
import torch
from test_divergence import Bench, add_error
from test_divergence_inplace import BF16_TOLERANCE, MatmulBlock, in_place_bench, ops_by_name
from torch import nn

from vision_bench.divergence.container_ops import ContainerShadows
from vision_bench.divergence.layer_passes import AutocastVariant, run_divergence


@pytest.fixture
def replayed(monkeypatch) -> list:
    """The names of the modules whose forward a container replay ran, in order."""
    names: list = []
    original = ContainerShadows.replay

    def counting(self, container, calls, args, kwargs):
        names.append(type(container).__name__)
        return original(self, container, calls, args, kwargs)

    monkeypatch.setattr(ContainerShadows, "replay", counting)
    return names


def bf16() -> AutocastVariant:
    return AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE)


class Unwatched(AutocastVariant):
    """bf16 without the own-operations judgement: every container with own operations replayed."""

    watches_operations = False


def test_exact_own_operations_are_recorded_as_zero_with_why_and_not_replayed(replayed):
    out = run_divergence(in_place_bench(1), bf16(), image=None)
    ops = ops_by_name(out)
    for name in ("blocks.0", "blocks.1", "concat"):  # `out += identity`, torch.cat, `y += x`
        assert ops[name, 1].own == 0, (name, ops[name, 1])
        assert "autocast does not lower" in ops[name, 1].zero_because
    assert "BasicBlock" not in replayed and "ConcatBlock" not in replayed
    # the shadow calls of the convolutions inside them (run from hooks) are not taken for their own operations
    assert all(r.zero_because is None and r.own > 0 for r in out.records if r.type == "Conv2d")


def test_the_skip_gives_what_the_replay_gives(replayed):
    skipped = run_divergence(in_place_bench(1), bf16(), image=None)
    assert not replayed
    forced = run_divergence(in_place_bench(1), Unwatched("torch-bf16", torch.bfloat16, BF16_TOLERANCE), image=None)
    assert {"BasicBlock", "ConcatBlock"} <= set(replayed)
    for key, record in ops_by_name(forced).items():
        assert ops_by_name(skipped)[key].own == record.own, key
    assert [(r.name, r.own) for r in skipped.records] == [(r.name, r.own) for r in forced.records]


def test_a_container_whose_own_code_runs_a_lowered_operation_is_still_replayed(replayed):
    torch.manual_seed(3)
    out = run_divergence(Bench(nn.Sequential(MatmulBlock()), torch.randn(16, 16)), bf16(), image=None)
    record = ops_by_name(out)["0", 1]
    assert "MatmulBlock" in replayed and record.zero_because is None and record.own > 1e-4


class EinsumBlock(nn.Module):
    """An operation outside the list (einsum, which autocast lowers through bmm)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        p = self.proj(x)
        return torch.einsum("ij,kj->ik", p, p)


def test_a_container_with_an_operation_outside_the_list_or_an_override_is_replayed(replayed):
    torch.manual_seed(6)
    out = run_divergence(Bench(nn.Sequential(EinsumBlock()), torch.randn(16, 16)), bf16(), image=None)
    assert "EinsumBlock" in replayed and ops_by_name(out)["0", 1].zero_because is None
    assert ops_by_name(out)["0", 1].own > 1e-4  # the einsum's bf16 rounding, found by the replay
    replayed.clear()
    planted = AutocastVariant("torch-bf16", torch.bfloat16, BF16_TOLERANCE, overrides={"blocks.0": add_error})
    out = run_divergence(in_place_bench(1), planted, image=None)
    assert "BasicBlock" in replayed and ops_by_name(out)["blocks.0", 1].zero_because is None
