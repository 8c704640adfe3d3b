"""Enhancement filters that run after decoding (or on any image).

- TinyPSSR: the seed's tiny pixel-shuffling super-resolution network, run on
  each colour channel as a one-channel image (x2: 1,356 parameters).
- UNet: artefact removal at the same resolution.
- SRUNet: 2x super-resolution with artefact removal.

UNet and SRUNet follow Vaccaro et al., "Fast video visual quality and
resolution improvement using SR-UNet" (ACM MM 2021): residual conv blocks,
max-pool down, bilinear up, a pixel-shuffle head and a skip from the input
(identity for UNet, bicubic for SRUNet), so the network only learns the
correction. Their conv blocks are RepVGG-style: a 3x3, a 1x1 and an identity
branch while training, folded into one 3x3 convolution for inference
(:func:`reparameterise`), which is what every backend runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import EdgePaddedConv2d, bicubic_phase_taps
from .options import FILTERS, FilterSpec  # noqa: F401 (the specs live where the CLI reads them without PyTorch)


class TinyPSSR(nn.Module):
    """conv(16, 5x5) PReLU conv(4, 1x1) PReLU conv(8, 5x5) PReLU conv(r*r, 1x1) pixel-shuffle(r).

    Input and output are one-channel images in [0, 1]; colour images are run
    channel by channel (the seed trained on split RGB channels).
    ``mid`` widens the second 5x5 layer: the x4 variant needs r*r = 16
    channels there (2,408 parameters; the seed's x4 model had 2,716).
    """

    def __init__(self, upscale: int = 2, mid: int = 8, squeeze: int = 4) -> None:
        super().__init__()
        self.upscale = upscale
        self.body = nn.Sequential(
            EdgePaddedConv2d(1, 16, 5),
            nn.PReLU(16),
            nn.Conv2d(16, squeeze, 1),
            nn.PReLU(squeeze),
            EdgePaddedConv2d(squeeze, mid, 5),
            nn.PReLU(mid),
            nn.Conv2d(mid, upscale * upscale, 1),
            nn.PixelShuffle(upscale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@torch.no_grad()
def init_tinypssr_as_bicubic(model: TinyPSSR) -> TinyPSSR:
    """Start TinyPSSR as exact bicubic upscaling, with the remaining weights free to learn the rest.

    One path through the network carries the input (first 5x5 conv: a delta;
    1x1 squeeze: passes it), the second 5x5 conv holds the r*r bicubic phase
    kernels and the last 1x1 routes them to the pixel shuffle. Pixel values are
    non-negative, so the PReLUs pass them unchanged. The seed architecture is
    unchanged; training starts at the bicubic baseline instead of below it.
    """
    conv1, _, squeeze, _, conv2, _, head, _ = model.body
    r = model.upscale
    if conv2.out_channels < r * r:
        raise ValueError("the second 5x5 layer needs at least upscale**2 channels for a bicubic start")
    conv1.weight[0].zero_()
    conv1.weight[0, 0, 2, 2] = 1.0
    conv1.bias[0] = 0.0
    squeeze.weight[0].zero_()
    squeeze.weight[0, 0] = 1.0
    squeeze.bias[0] = 0.0
    taps = bicubic_phase_taps(r)
    for i in range(r):
        for j in range(r):
            p = i * r + j  # PixelShuffle puts channel i*r + j at sub-position (i, j)
            conv2.weight[p].zero_()
            conv2.weight[p, 0] = torch.outer(taps[i], taps[j])
            conv2.bias[p] = 0.0
    head.weight.zero_()
    head.bias.zero_()
    for p in range(r * r):
        head.weight[p, p] = 1.0
    return model


class RepConv(nn.Module):
    """3x3 conv + 1x1 conv (+ identity when shapes allow) while training; one 3x3 conv after :meth:`fuse`.

    The extra branches make the small network train better; being linear they
    fold exactly into the 3x3 kernel, so inference pays for one convolution.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv1 = nn.Conv2d(cin, cout, 1)
        self.has_identity = cin == cout
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        y = self.conv3(x) + self.conv1(x)
        return y + x if self.has_identity else y

    @torch.no_grad()
    def fuse(self) -> None:
        weight = self.conv3.weight.clone()
        weight[:, :, 1, 1] += self.conv1.weight[:, :, 0, 0]
        if self.has_identity:
            weight[:, :, 1, 1] += torch.eye(weight.shape[0], dtype=weight.dtype)
        conv = nn.Conv2d(self.conv3.in_channels, self.conv3.out_channels, 3, padding=1)
        conv.weight.copy_(weight)
        conv.bias.copy_(self.conv3.bias + self.conv1.bias)
        self.fused = conv
        del self.conv3, self.conv1


DC_RADIUS = 15  # the correction's local mean over about (2r+1)^2 output pixels is removed


def local_mean(x: torch.Tensor, radius: int = DC_RADIUS) -> torch.Tensor:
    """Box average over (2r+1)^2 pixels, edges replicated: running sums (cumsum), not pooling.

    Two cumulative sums and differences cost a few operations per pixel whatever
    the radius; two ``avg_pool2d`` with a 31-wide window were 7x slower in
    PyTorch on a 1024x1536 SRUNet output (244 against 35 ms, 2 threads; in ONNX
    Runtime the two forms cost about the same). Same numbers to float rounding
    (a test compares with the pooling form).
    """
    k = 2 * radius + 1
    # One extra leading pixel so that the first window's sum is c[k] - c[0].
    x = F.pad(x, (radius + 1, radius, radius + 1, radius), mode="replicate")
    c = torch.cumsum(x, 3)
    c = torch.cumsum(c[..., k:] - c[..., :-k], 2)
    return (c[:, :, k:] - c[:, :, :-k]) * (1.0 / (k * k))


def remove_local_mean(phases: torch.Tensor, factor: int) -> torch.Tensor:
    """Subtract each colour's local mean from an image held as pixel-shuffle phases.

    ``phases``: (N, 3 * factor^2, h, w), the (N, 3, h * factor, w * factor) image
    that ``F.pixel_shuffle(phases, factor)`` makes. The mean is taken over the
    factor^2 phases of a colour and a (2r+1)^2 box of positions, r = DC_RADIUS // factor
    (30x30 output pixels for factor 2): the image's local mean, at 1/factor^2 of the
    cost of taking it after the shuffle.
    """
    n, c, h, w = phases.shape
    by_colour = phases.reshape(n, 3, c // 3, h, w)
    mean = local_mean(by_colour.mean(2), DC_RADIUS // factor)
    return (by_colour - mean.unsqueeze(2)).reshape(n, c, h, w)


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(RepConv(cin, cout), nn.ReLU(inplace=True), RepConv(cout, cout), nn.ReLU(inplace=True))


BODY_FACTOR = 2  # the UNets' body runs at half the output resolution


class EncoderDecoder(nn.Module):
    """The UNets' body: three levels (widths w, 2w, 4w; max-pool down, bilinear up, skip concatenations)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.enc0 = _stage(in_channels, w)
        self.enc1 = _stage(w, 2 * w)
        self.enc2 = _stage(2 * w, 4 * w)
        self.dec1 = _stage(6 * w, 2 * w)
        self.dec0 = _stage(3 * w, w)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, w, H, W); H and W multiples of 4."""
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d1 = self.dec1(torch.cat([F.interpolate(e2, scale_factor=2.0, mode="bilinear", align_corners=False), e1], 1))
        return self.dec0(torch.cat([F.interpolate(d1, scale_factor=2.0, mode="bilinear", align_corners=False), e0], 1))


class UNet(EncoderDecoder):
    """Three-level encoder-decoder (widths w, 2w, 4w) with skips; ``upscale`` 1 (UNet) or 2 (SRUNet).

    The body runs at half the output's resolution: UNet pixel-unshuffles its
    input by 2 first (3 -> 12 channels), SRUNet takes its input as it is. Its
    head makes the 2x2 pixel-shuffle phases of the correction, to which the
    skip is added in the same layout (UNet: the unshuffled input itself;
    SRUNet: bicubic 2x upscaling as a depthwise convolution), and one pixel
    shuffle makes the output. Why: the int8 backends speed up convolutions, not
    data movement; at full resolution UNet's concatenations, resizes and
    layout changes kept ONNX Runtime int8 at 1.2x of fp32 (the bar is 1.8x).
    With everything but one shuffle at half resolution, and convolutions
    wider for the same cost, int8 gains far more (prototypes with random
    weights, 512x768, 2 threads: 1.9x for both).

    ReLU rather than PReLU: quantised backends fuse it into the convolution.
    Height and width must be multiples of 4 * (2 // upscale): two max-pools in
    the body; :func:`run_filter` pads.

    The correction is made locally zero-mean (minus its 30x30 box average):
    the filter restores detail and removes artefacts but cannot shift local
    colour. Trained without this, both networks learnt image-dependent colour
    shifts from the 36 training photographs that cost up to 2 dB on held-out
    images (tinycodec's colour errors vary per image; see the model card).
    """

    def __init__(self, width: int, upscale: int = 1) -> None:
        if upscale not in (1, 2):
            raise ValueError("UNet upscale must be 1 or 2")
        stem = BODY_FACTOR // upscale  # pixel-unshuffle of the input
        super().__init__(3 * stem * stem, width)
        self.upscale, self.stem = upscale, stem
        self.head = nn.Conv2d(width, 3 * BODY_FACTOR * BODY_FACTOR, 3, padding=1)
        if upscale > 1:  # not in the state dict: a constant
            self.register_buffer("skip_kernels", bicubic_kernels(upscale), persistent=False)
        if self.stem > 1:
            self.register_buffer("unshuffle_kernels", unshuffle_kernels(self.stem), persistent=False)
        nn.init.zeros_(self.head.weight)  # start as the skip alone (identity / bicubic)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body_in = F.conv2d(x, self.unshuffle_kernels, stride=self.stem) if self.stem > 1 else x
        correction = remove_local_mean(self.head(self.features(body_in)), BODY_FACTOR)
        skip = body_in if self.upscale == 1 else bicubic_phases(x, self.upscale, self.skip_kernels)
        return F.pixel_shuffle(skip + correction, BODY_FACTOR)


def unshuffle_kernels(factor: int, channels: int = 3) -> torch.Tensor:
    """(channels*factor^2, channels, factor, factor) one-hot kernels: a stride-``factor`` convolution
    with them is ``F.pixel_unshuffle`` (the same numbers: each output is one input pixel times 1).

    Why a convolution: ``pixel_unshuffle`` exports as a 6-D transpose, which ONNX Runtime ran in
    6.5 ms on a 512x768 image, a tenth of UNet's whole int8 graph; its convolutions are fast at any size.
    """
    kernels = torch.zeros(channels * factor * factor, channels, factor, factor)
    for c in range(channels):
        for i in range(factor):
            for j in range(factor):
                kernels[c * factor * factor + i * factor + j, c, i, j] = 1.0
    return kernels


def bicubic_kernels(factor: int, channels: int = 3) -> torch.Tensor:
    """(channels*factor*factor, 1, 5, 5) depthwise kernels for :func:`bicubic_phases` (PyTorch's a = -0.75).

    Kernel ``c*factor*factor + i*factor + j`` makes output phase (i, j) of channel c
    from the 5x5 input neighbourhood (the order pixel shuffle expects).
    """
    taps = bicubic_phase_taps(factor, a=-0.75).double()
    kernels = torch.einsum("iy,jx->ijyx", taps, taps).reshape(factor * factor, 1, 5, 5)
    return kernels.float().repeat(channels, 1, 1, 1)


def bicubic_phases(x: torch.Tensor, factor: int, kernels: torch.Tensor | None = None) -> torch.Tensor:
    """The pixel-shuffle phases of :func:`bicubic_upsample`: (N, C, H, W) -> (N, C*factor^2, H, W)."""
    c = int(x.shape[1])
    if kernels is None:
        kernels = bicubic_kernels(factor, c)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernels.to(x.dtype), groups=c)


def bicubic_upsample(x: torch.Tensor, factor: int, kernels: torch.Tensor | None = None) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)``, computed as a convolution.

    The same numbers (PyTorch clamps source indices at the border: replicate
    padding), but one depthwise convolution and a pixel shuffle, which every
    backend runs fast; ONNX Runtime's cubic Resize took 40% of SRUNet's time.
    ``kernels``: :func:`bicubic_kernels` for x's channels, precomputed (a
    module buffer, so that ONNX export sees a constant).
    """
    return F.pixel_shuffle(bicubic_phases(x, factor, kernels), factor)


def reparameterise(model: nn.Module) -> nn.Module:
    """Fold every RepConv into a single 3x3 convolution (in place); returns the model."""
    for module in model.modules():
        if isinstance(module, RepConv) and module.fused is None:
            module.fuse()
    return model


_BUILDERS = {
    "tinypssr-x2": lambda: TinyPSSR(2),
    "tinypssr-x4": lambda: TinyPSSR(4, mid=16),
    "unet": lambda: UNet(24, upscale=1),
    "srunet": lambda: UNet(24, upscale=2),
}


def build_filter(name: str) -> nn.Module:
    """The untrained network of a shipped filter (:data:`FILTERS`, whose specs live in tinycodec.options)."""
    return _BUILDERS[name]()


def run_filter(model: nn.Module, spec: FilterSpec, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> (N, 3, H*r, W*r), clamped; pads to the network's multiple and crops back."""
    n, c, h, w = x.shape
    m = spec.multiple
    ph, pw = -h % m, -w % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    if spec.per_channel:
        y = model(x.reshape(n * c, 1, *x.shape[2:])).reshape(n, c, x.shape[2] * spec.upscale, -1)
    else:
        y = model(x)
    r = spec.upscale
    return y[:, :, : h * r, : w * r].clamp(0.0, 1.0)
