"""TinyCompress networks: the encoding and decoding blocks of the seed design.

An encoding block halves width and height; a decoding block doubles them. A
TinyCompress model of depth ``k`` applies an encoding block ``k`` times and a
decoding block ``k`` times: either the same block every time (weights shared
across iterations, 5,427 + 1,071 parameters at every level, as in the seed) or
one block per iteration (k times that); weights/README.md says which each
shipped level uses and why. Each scale level is a separate model trained for
its own depth.

Every convolution pads by replicating the edge pixels, not with zeros: zeros
read as a black frame around the image, and with k iterations the frame
reaches 4 * (2^k - 1) pixels into it (60 at scale 256), a band the
decoder cannot undo. They gave 0.6-1.0 dB on 512-px crops with untrained
resampler weights at k >= 2. The padding is written as slices and concatenation
(:class:`EdgePaddedConv2d`), not PyTorch's ``padding_mode="replicate"``: that
exports to an ONNX ``Pad(mode=edge)`` which ONNX Runtime's CPU kernel runs at
half the speed of a concatenation (one padded 3x3 convolution on 12 x 512 x 768,
2 threads: 16 against 9 ms; measured once with a throwaway script).
"""

from __future__ import annotations

import torch
from torch import nn

from .options import SCALE_DEPTHS  # noqa: F401 (scale level -> block iterations k; defined without PyTorch)

LATENT_CHANNELS = 3


def edge_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Replicate the outermost rows and columns ``p`` times (= ``F.pad(x, (p,) * 4, mode="replicate")``)."""
    if p == 0:
        return x
    n, c, h, w = x.shape
    x = torch.cat([x[:, :, :1].expand(n, c, p, w), x, x[:, :, -1:].expand(n, c, p, w)], dim=2)
    return torch.cat([x[:, :, :, :1].expand(n, c, h + 2 * p, p), x, x[:, :, :, -1:].expand(n, c, h + 2 * p, p)], dim=3)


class EdgePaddedConv2d(nn.Conv2d):
    """A 'same'-size convolution whose padding replicates the edge pixels (module docstring: why).

    A subclass of nn.Conv2d with the same parameters, so weights files are unchanged."""

    def __init__(self, c_in: int, c_out: int, size: int) -> None:
        super().__init__(c_in, c_out, size, padding=0)
        self.edge = size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(edge_pad(x, self.edge))


class EncoderBlock(nn.Module):
    """conv(15, 9x9) PReLU conv(3, 1x1) PReLU unshuffle(2) conv(15, 3x3) PReLU conv(3, 1x1) PReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            EdgePaddedConv2d(3, 15, 9),
            nn.PReLU(15),
            nn.Conv2d(15, 3, 1),
            nn.PReLU(3),
            nn.PixelUnshuffle(2),
            EdgePaddedConv2d(12, 15, 3),
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
            EdgePaddedConv2d(3, 12, 3),
            nn.PReLU(12),
            nn.PixelShuffle(2),
            EdgePaddedConv2d(3, 9, 5),
            nn.PReLU(9),
            nn.Conv2d(9, 3, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class IteratedBlocks(nn.Module):
    """Applies a block ``depth`` times, the same block (``shared``) or one block per iteration.

    Shared blocks are the seed's design; per-iteration blocks (k x the parameters)
    let each pass learn its own role: the first encoding pass need not produce an
    image that looks like the input of the second. Weights-file keys tell them
    apart (``block.`` against ``blocks.<i>.``), so a file says which it is."""

    def __init__(self, make_block: type[nn.Module], depth: int, shared: bool = True) -> None:
        super().__init__()
        self.depth = depth
        self.shared = shared
        if shared:
            self.block = make_block()
        else:
            self.blocks = nn.ModuleList(make_block() for _ in range(depth))

    def distinct_blocks(self) -> list[nn.Module]:
        """Each block once: one if shared, ``depth`` otherwise."""
        return [self.block] if self.shared else list(self.blocks)

    def iterations(self) -> list[nn.Module]:
        """The block of each pass, in the order they run."""
        return [self.block] * self.depth if self.shared else list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.iterations():
            x = block(x)
        return x


class TinyCompress(nn.Module):
    """Encoder and decoder of one scale level; the quantiser sits between them.

    encoder: (N,3,H,W) in [0,1] -> latent (N,3,H/2^k,W/2^k); decoder: latent -> (N,3,H,W) in [0,1]."""

    def __init__(self, scale: int, shared: bool = True) -> None:
        super().__init__()
        if scale not in SCALE_DEPTHS:
            raise ValueError(f"scale must be one of {sorted(SCALE_DEPTHS)}, not {scale}")
        self.scale = scale
        self.depth = SCALE_DEPTHS[scale]
        self.encoder = IteratedBlocks(EncoderBlock, self.depth, shared)
        self.decoder = IteratedBlocks(DecoderBlock, self.depth, shared)

    @property
    def shared(self) -> bool:
        return self.encoder.shared


def has_shared_blocks(state: dict[str, torch.Tensor]) -> bool:
    """Whether a TinyCompress state dict holds one block per part (True) or one per iteration."""
    return not any(key.startswith("encoder.blocks.") for key in state)


def from_state_dict(scale: int, state: dict[str, torch.Tensor]) -> TinyCompress:
    """A TinyCompress of the block layout the state dict holds, with those weights loaded (strict)."""
    model = TinyCompress(scale, shared=has_shared_blocks(state))
    model.load_state_dict(state)
    return model


@torch.no_grad()
def untie(model: TinyCompress) -> TinyCompress:
    """A per-iteration-blocks copy of a shared-blocks model that computes the same function.

    The starting point for training per-iteration blocks: from the trained shared
    weights, not from a resampler, so training starts where the shared model ended."""
    untied = TinyCompress(model.scale, shared=False)
    for src, dst in ((model.encoder, untied.encoder), (model.decoder, untied.decoder)):
        for block_src, block_dst in zip(src.iterations(), dst.iterations()):
            block_dst.load_state_dict(block_src.state_dict())
    return untied


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def cubic_kernel(d: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel: a = -0.5 as Pillow's BICUBIC, -0.75 as PyTorch's."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def bicubic_phase_taps(upscale: int, a: float = -0.5) -> torch.Tensor:
    """(upscale, 5) 1-D taps at offsets -2..2 of each output phase (half-pixel centres, as Pillow/PyTorch)."""
    taps = torch.zeros(upscale, 5, dtype=torch.float64)
    for i in range(upscale):
        t = (i + 0.5) / upscale - 0.5  # the output sample's position in input pixels
        for k in range(-2, 3):
            taps[i, k + 2] = cubic_kernel(k - t, a)
    return taps


def _antialias_taps() -> torch.Tensor:
    """9 taps h such that h convolved with the 2-tap box is closest (least squares) to bicubic /2.

    The encoding block can only decimate after its 9x9 convolution by averaging
    the four pixels of each 2x2 block (the 3x3 convolution after the
    unshuffle), so the 9x9 kernel must be what, followed by that box, makes
    Pillow's antialiased bicubic downscale: cubic(d / 2) at d = +-0.5 ... +-3.5.
    """
    target = torch.tensor([0.0] + [cubic_kernel((i + 0.5) / 2) for i in range(-4, 4)] + [0.0], dtype=torch.float64)
    target /= target.sum()
    box = torch.zeros(10, 9, dtype=torch.float64)
    for i in range(9):
        box[i, i] = box[i + 1, i] = 0.5
    return torch.linalg.lstsq(box, target[:, None]).solution[:, 0].float()


def _upsample_taps(phase: int) -> torch.Tensor:
    """3 bicubic taps (previous, own, next latent sample) for output sub-pixel 0 or 1, summing to 1.

    The 3x3 convolution reaches one neighbour each way, so of the 2x phase's
    five taps (:func:`bicubic_phase_taps`) the outer ones (2% of the weight)
    are dropped and the rest renormalised.
    """
    taps = bicubic_phase_taps(2)[phase, 1:4]
    return (taps / taps.sum()).float()


# f(x) = sum_m w_m prelu_m(x - t_m) + b with sigmoid(f(x)) close to x on [0, 1]: three PReLU
# units per colour (the decoding block's 5x5 convolution has 9 channels) approximating logit, so
# an untrained decoding block can pass an image through its final sigmoid. Fitted once by Adam on
# the mean squared error of sigmoid(f(x)) - x over 501 points of [0, 1]: max error 0.03 (at the
# ends), mean 0.0055. Only a starting point for training, so four digits are plenty.
_LOGIT_KNOTS = (0.1867, 0.7437, 0.8789)
_LOGIT_SLOPES = (5.1860, 0.5937, -0.0829)
_LOGIT_WEIGHTS = (1.6867, 5.4650, 7.8222)
_LOGIT_BIAS = 0.0111


@torch.no_grad()
def init_as_resampler(model: TinyCompress, noise: float = 1e-3, seed: int = 0) -> TinyCompress:
    """Start training from a bicubic resampler instead of random weights.

    The encoding block is set to Pillow-like antialiased bicubic downscaling by
    2 and the decoding block to bicubic upscaling by 2 (through a sigmoid made
    as close to the identity as three PReLU units get it), with small noise in
    every other weight. At any depth the untrained model is then a down/up-
    sampler of the image, and training starts from a useful reconstruction
    with healthy gradients. From random weights the deeper levels sat at a
    constant grey image for thousands of steps (TC-16) or never left it (TC-64
    started from TC-16); from 2x2 averaging and bilinear upscaling (the first
    version of this function) they started 1.6 dB lower than from bicubic.
    """
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=gen) * noise)
    for enc, dec in zip(model.encoder.distinct_blocks(), model.decoder.distinct_blocks()):
        for prelu in (m for m in list(enc.body) + list(dec.body) if isinstance(m, nn.PReLU)):
            prelu.weight.fill_(1.0)
        _set_resampler(enc.body, dec.body)
    return model


def _set_resampler(enc: nn.Sequential, dec: nn.Sequential) -> None:
    h = _antialias_taps()
    # Encoder: 9x9 antialias filter per colour, 1x1 picks the colours, unshuffle to 12 channels,
    # 3x3 averages each 2x2 block (unshuffle puts colour c's four sub-pixels at channels 4c..4c+3).
    for c in range(3):
        enc[0].weight[c, c] = torch.outer(h, h)
        enc[2].weight[c, c, 0, 0] = 1.0
        enc[5].weight[c, 4 * c : 4 * c + 4, 1, 1] = 0.25
        enc[7].weight[c, c, 0, 0] = 1.0
    # Decoder: 3x3 makes the four bicubic sub-pixels of each colour, shuffle interleaves them,
    # then the 5x5 passes each colour to three PReLU units that the 1x1 sums into logit(x).
    for c in range(3):
        for i in range(2):
            for j in range(2):
                dec[0].weight[4 * c + 2 * i + j, c] = torch.outer(_upsample_taps(i), _upsample_taps(j))
    dec[5].weight.zero_()
    dec[5].bias.fill_(_LOGIT_BIAS)
    for c in range(3):
        for m in range(3):
            ch = 3 * c + m
            dec[3].weight[ch].zero_()
            dec[3].weight[ch, c, 2, 2] = 1.0
            dec[3].bias[ch] = -_LOGIT_KNOTS[m]
            dec[4].weight[ch] = _LOGIT_SLOPES[m]
            dec[5].weight[c, ch, 0, 0] = _LOGIT_WEIGHTS[m]
