"""The v3 UNet layout (its body at full resolution), kept as the teacher of the shipped UNet.

The half-resolution UNet (tinycodec.filters.UNet) started from scratch learns
very slowly on the real targets: what a filter can recover from a decoded
image is a small part of what separates it from the original, so the
gradient is mostly noise (from scratch, 1,500 steps reached +0.007 dB on
the validation pairs). The v3 UNet's output is a target with no
unrecoverable part, so ``train_filters.py --teacher`` first teaches the new
layout to reproduce it, then the real targets take over. Its weights:
``git show 507b334:weights/unet.safetensors > unet-v3.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tinycodec.filters import EncoderDecoder, local_mean, reparameterise


class FullResolutionUNet(EncoderDecoder):
    """tinycodec 0.x's v3 UNet: widths 16/32/64 at full, half and quarter resolution; identity skip."""

    def __init__(self, width: int = 16) -> None:
        super().__init__(3, width)
        self.head = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.head(self.features(x))
        return x + residual - local_mean(residual)


def load_teacher(path: Path, device: torch.device) -> nn.Module:
    """The v3 UNet from its weights file, folded, frozen, ready to make targets."""
    from safetensors.torch import load_file

    model = FullResolutionUNet()
    model.load_state_dict(load_file(str(path)))
    model = reparameterise(model).eval().to(device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
