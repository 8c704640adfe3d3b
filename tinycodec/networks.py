"""The networks tinycodec runs, named, with their weights: what every inference backend is handed.

A network is one registered weights version of one of:

- ``tinycompress-sN.encoder`` / ``tinycompress-sN.decoder`` (N = 4, 16, 64, 256):
  the codec's encoding and decoding block applied k times (one graph for all k
  iterations); encoder (n, 3, H, W) in [0, 1] -> latent (n, 3, H/2^k, W/2^k),
  decoder the reverse, output in [0, 1].
- the enhancement filters ``tinypssr-x2``, ``tinypssr-x4`` (one-channel images:
  (n, 1, H, W) -> (n, 1, rH, rW)), ``unet`` and ``srunet`` ((n, 3, H, W), H and W
  multiples of 8 and 4), reparameterised (the folded single-convolution blocks).

The backends only ever see float32 arrays in this layout; pre- and
post-processing (uint8 conversion, padding, tiling, clamping) is the runtime's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .options import FILTERS, SCALE_DEPTHS, FilterSpec
from .zoo import WeightsEntry, current_entry, load_tensors, model_name

if TYPE_CHECKING:
    import torch

CODEC_PARTS = ("encoder", "decoder")


@dataclass(frozen=True)
class Network:
    """One network with one weights version; hashable, so runners can be cached per network."""

    name: str  # e.g. "tinycompress-s16.decoder", "srunet"
    entry: WeightsEntry

    @property
    def is_codec(self) -> bool:
        return self.name.startswith("tinycompress-")

    @property
    def scale(self) -> int:
        return int(self.name.split(".")[0].split("-s")[1])

    @property
    def part(self) -> str:
        """"encoder", "decoder" or "filter"."""
        return self.name.split(".")[1] if self.is_codec else "filter"

    @property
    def filter_spec(self) -> FilterSpec:
        return FILTERS[self.name]

    @property
    def is_unet(self) -> bool:
        """UNet or SRUNet: a filter on whole RGB images, made to run on tinycodec's decodes."""
        return not self.is_codec and not self.filter_spec.per_channel

    @property
    def in_channels(self) -> int:
        return 1 if not self.is_codec and self.filter_spec.per_channel else 3

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        if self.is_codec:
            return 1 << SCALE_DEPTHS[self.scale] if self.part == "encoder" else 1
        return self.filter_spec.multiple

    def example_shape(self, side: int = 48) -> tuple[int, int, int, int]:
        """A small valid input shape (for export and checks): height side, width 1.5 side, rounded up."""
        m = max(self.multiple, 1)
        h, w = -(-side // m) * m, -(-(side * 3 // 2) // m) * m
        if self.part == "decoder":
            h, w = max(2, side // 8), max(3, side * 3 // 16)
        return (1, self.in_channels, h, w)

    def build(self) -> torch.nn.Module:
        """The fp32 PyTorch module (CPU, eval mode, contiguous format), weights loaded and checked."""
        import torch

        from .filters import reparameterise
        from .models import from_state_dict

        state = {k: torch.from_numpy(v.copy()) for k, v in load_tensors(self.entry).items()}
        if self.is_codec:
            model = from_state_dict(self.scale, state)
            module = model.encoder if self.part == "encoder" else model.decoder
        else:
            module = self.filter_spec.build()
            module.load_state_dict(state)
            reparameterise(module)
        return module.eval()


def codec_network(entry: WeightsEntry, scale: int, part: str) -> Network:
    if part not in CODEC_PARTS:
        raise ValueError(f"part must be one of {CODEC_PARTS}, not {part!r}")
    return Network(f"{model_name(scale)}.{part}", entry)


def filter_network(entry: WeightsEntry) -> Network:
    return Network(entry.model, entry)


def network_names() -> list[str]:
    """Every network name tinycodec ships (whether or not its weights are registered yet)."""
    return [f"{model_name(s)}.{p}" for s in sorted(SCALE_DEPTHS) for p in CODEC_PARTS] + list(FILTERS)


def network(name: str) -> Network:
    """The current weights version of a network, by name (TinyCodecError if its weights are not registered)."""
    if name in FILTERS:
        return filter_network(current_entry(name))
    model, _, part = name.partition(".")
    for scale in SCALE_DEPTHS:
        if model == model_name(scale) and part in CODEC_PARTS:
            return codec_network(current_entry(model), scale, part)
    raise ValueError(f"unknown network '{name}': choose from {', '.join(network_names())}")
