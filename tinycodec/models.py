"""TinyCompress networks: the encoding and decoding blocks of the seed design.

An encoding block halves width and height; a decoding block doubles them. A
TinyCompress model of depth ``k`` applies *the same* encoding block ``k`` times
and the same decoding block ``k`` times (weights shared across iterations),
which keeps every scale level at 5,427 + 1,071 parameters, as in the seed.
Each scale level is a separate model trained for its own depth.
"""

from __future__ import annotations

import torch
from torch import nn

# Scale level (pixels per latent element) -> number of block iterations k.
SCALE_DEPTHS: dict[int, int] = {4: 1, 16: 2, 64: 3, 256: 4}
LATENT_CHANNELS = 3


class EncoderBlock(nn.Module):
    """conv(15, 9x9) PReLU conv(3, 1x1) PReLU unshuffle(2) conv(15, 3x3) PReLU conv(3, 1x1) PReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 15, 9, padding=4),
            nn.PReLU(15),
            nn.Conv2d(15, 3, 1),
            nn.PReLU(3),
            nn.PixelUnshuffle(2),
            nn.Conv2d(12, 15, 3, padding=1),
            nn.PReLU(15),
            nn.Conv2d(15, 3, 1),
            nn.PReLU(3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DecoderBlock(nn.Module):
    """conv(12, 3x3) PReLU shuffle(2) conv(9, 5x5) PReLU conv(3, 1x1) sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1),
            nn.PReLU(12),
            nn.PixelShuffle(2),
            nn.Conv2d(3, 9, 5, padding=2),
            nn.PReLU(9),
            nn.Conv2d(9, 3, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class IteratedEncoder(nn.Module):
    """Applies one EncoderBlock ``depth`` times: (N,3,H,W) in [0,1] -> (N,3,H/2^k,W/2^k)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.block = EncoderBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.depth):
            x = self.block(x)
        return x


class IteratedDecoder(nn.Module):
    """Applies one DecoderBlock ``depth`` times: latent -> (N,3,H,W) in [0,1]."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.block = DecoderBlock()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        for _ in range(self.depth):
            y = self.block(y)
        return y


class TinyCompress(nn.Module):
    """Encoder and decoder of one scale level; the quantiser sits between them."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        if scale not in SCALE_DEPTHS:
            raise ValueError(f"scale must be one of {sorted(SCALE_DEPTHS)}, not {scale}")
        self.scale = scale
        self.depth = SCALE_DEPTHS[scale]
        self.encoder = IteratedEncoder(self.depth)
        self.decoder = IteratedDecoder(self.depth)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def init_as_resampler(model: TinyCompress, noise: float = 1e-3, seed: int = 0) -> TinyCompress:
    """Start training from a plain resampler instead of random weights.

    The encoding block is set to 2x2 average pooling and the decoding block to
    bilinear 2x upsampling (through a sigmoid made as close to the identity as
    it gets), with PReLU slopes of 1 and small noise in every other weight.
    At any depth the untrained model is then a down/up-sampler of the image:
    training starts from a useful reconstruction with healthy gradients.
    From random weights the deeper levels sat at a constant grey image for
    thousands of steps (TC-16) or never left it (TC-64 started from TC-16).
    """
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=gen) * noise)
    enc, dec = model.encoder.block.body, model.decoder.block.body
    for prelu in (m for m in list(enc) + list(dec) if isinstance(m, nn.PReLU)):
        prelu.weight.fill_(1.0)
    # Encoder: conv 9x9 passes colours through, 1x1 picks them, unshuffle to 12 channels, 3x3 averages each 2x2.
    for c in range(3):
        enc[0].weight[c, c, 4, 4] = 1.0
        enc[2].weight[c, c, 0, 0] = 1.0
        enc[5].weight[c, 4 * c : 4 * c + 4, 1, 1] = 0.25
        enc[7].weight[c, c, 0, 0] = 1.0
    # Decoder: 3x3 produces the four bilinear sub-pixel phases of each colour, shuffle interleaves them.
    taps = {0: (0, 1), 1: (2, 1)}  # sub-pixel 0 leans on the previous neighbour, 1 on the next
    for c in range(3):
        for i in range(2):
            for j in range(2):
                k = torch.zeros(3, 3)
                for yy, wy in ((1, 0.75), (taps[i][0], 0.25)):
                    for xx, wx in ((1, 0.75), (taps[j][0], 0.25)):
                        k[yy, xx] += wy * wx
                dec[0].weight[4 * c + 2 * i + j, c] = k
        dec[3].weight[c, c, 2, 2] = 1.0
    # sigmoid(a * (x - 0.5)) with a = 5 is the closest a sigmoid gets to x on [0, 1] (max error 0.08).
    dec[5].weight.zero_()
    dec[5].bias.fill_(-2.5)
    for c in range(3):
        dec[5].weight[c, c, 0, 0] = 5.0
    return model
