"""The torch-channels-last variant: the network's weights and its input in channels-last memory format."""

from __future__ import annotations

from ..records.variants import VariantDetails
from .base import Variant


class TorchChannelsLast(Variant):
    name = "torch-channels-last"
    description = "network weights and input in channels-last memory format"

    def prepare(self, bench, images: list) -> VariantDetails:
        bench.use_channels_last()
        return VariantDetails(memory_format="channels_last")

    def hooked(self, bench):
        from ..divergence.layer_passes import ChannelsLastVariant

        return ChannelsLastVariant(self.name, self.divergence_tolerance(bench))
