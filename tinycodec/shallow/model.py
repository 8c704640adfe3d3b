"""The networks of the shallow-decoder family: a heavy amortised analysis, a hyperprior, a two-layer synthesis.

After Yang & Mandt, "Computationally-efficient neural image compression with shallow decoders" (ICCV 2023,
arXiv 2304.06244): a transform codec whose decoder is nearly linear (two transposed convolutions around an
inverse GDN) while the encoder is a deep network, with the mean-scale hyperprior of Minnen et al. 2018 as the
entropy model (here a small one, run at 1/16 and 1/32 resolution). Data flow::

    image --analysis (4 strided 5x5 convs, GDN)--> y (M x H/16 x W/16) --/ step(q), round--> k (integers)
    y --hyper-analysis--> z (Z x H/64 x W/64) --round--> kz  (coded with a per-channel Laplace per quality)
    kz --hyper-synthesis (2 transposed convs)--> mean, scale of each k   (coded with a discretised Laplace)
    k * step(q) --tconv 8x8/4--> C x H/4 x W/4 --IGDN--> --tconv 8x8/4--> RGB

The quality q in 0..100 sets lambda (see :func:`quality_lambda`) and, through learned per-channel
quantisation steps at five anchor qualities (log-interpolated between them), the rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..laplace import LATENT_LIMIT, LOG_SCALE_STEP, SCALE_BINS, SCALE_MIN
from ..pyramid.model import laplace_bits, quality_lambda
from .layout import ANCHOR_QUALITIES, ARCHITECTURES, MAX_QUALITY, Architecture

DEFAULT_ARCHITECTURE = ARCHITECTURES["shallow-v2"]


class GDN(nn.Module):
    """Generalised divisive normalisation (Balle et al. 2016): x / sqrt(beta + gamma x^2), or its inverse."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a channel matrix product, not a 1x1 convolution: PyTorch's CPU 1x1 convolution is several times slower
        n, c, h, w = x.shape
        norm = torch.matmul(self.gamma.abs(), (x * x).reshape(n, c, h * w)) + (self.beta.abs() + 1e-6)[:, None]
        norm = norm.view(n, c, h, w)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def _down(a: int, b: int, k: int = 5) -> nn.Conv2d:
    return nn.Conv2d(a, b, k, stride=2, padding=k // 2)


class Analysis(nn.Module):
    """Image -> y at 1/latent_stride resolution (the encoder side only: its cost never reaches the decoding
    device): strided 5x5 convolutions with GDN between them."""

    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        n, m = arch.analysis_channels, arch.latent_channels
        layers: list[nn.Module] = [_down(3, n), GDN(n)]
        for _ in range(arch.latent_stride.bit_length() - 3):
            layers += [_down(n, n), GDN(n)]
        self.net = nn.Sequential(*layers, _down(n, m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x - 0.5)


class HyperAnalysis(nn.Module):
    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        m, h, z = arch.latent_channels, arch.analysis_channels, arch.hyper_channels
        self.net = nn.Sequential(nn.Conv2d(m, h, 3, padding=1), nn.ReLU(), _down(h, h), nn.ReLU(), _down(h, z))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


class HyperSynthesis(nn.Module):
    """kz (integers) -> mean and scale index of every element of y, in y's own units (before the step)."""

    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        z, h, m = arch.hyper_channels, arch.hyper_hidden, arch.latent_channels
        self.up1 = nn.ConvTranspose2d(z, h, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(h, 2 * m, 4, stride=2, padding=1)

    def forward(self, kz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.up2(F.relu(self.up1(kz)))
        mean, log_scale = out.chunk(2, dim=1)
        return mean, log_scale


class Synthesis(nn.Module):
    """Dequantised y -> RGB: a stride-4 transposed conv, inverse GDN, a transposed conv to pixels (kernels
    twice their stride)."""

    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        m, c, s = arch.latent_channels, arch.synthesis_channels, arch.last_stride
        self.up1 = nn.ConvTranspose2d(m, c, 8, stride=4, padding=2)
        self.igdn = GDN(c, inverse=True)
        self.up2 = nn.ConvTranspose2d(c, 3, 2 * s, stride=s, padding=s // 2)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.up2(self.igdn(self.up1(y))) + 0.5


class QuantiserSteps(nn.Module):
    """Per-channel log quantisation steps of y and log scales of z's prior at the anchor qualities,
    log-linearly interpolated in between (a continuous quality knob from five trained points)."""

    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        a = len(ANCHOR_QUALITIES)
        init = torch.linspace(math.log(2.0), math.log(0.25), a)
        self.log_step = nn.Parameter(init[:, None].repeat(1, arch.latent_channels))
        self.z_log_scale = nn.Parameter(torch.zeros(a, arch.hyper_channels))

    @staticmethod
    def _interpolate(table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        pos = (q.float() / MAX_QUALITY).clamp(0, 1) * (len(ANCHOR_QUALITIES) - 1)
        lo = pos.floor().clamp(max=len(ANCHOR_QUALITIES) - 2).long()
        t = (pos - lo.float())[:, None]
        return table[lo] * (1 - t) + table[lo + 1] * t

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q: (N,) -> log steps (N, M), z log scales (N, Z)."""
        return self._interpolate(self.log_step, q), self._interpolate(self.z_log_scale, q)


class ShallowDecoder(nn.Module):
    """What a decoding device holds: quantiser steps, hyper-synthesis (entropy parameters), synthesis."""

    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        self.steps = QuantiserSteps(arch)
        self.hyper = HyperSynthesis(arch)
        self.synthesis = Synthesis(arch)

    def entropy_parameters(self, kz: torch.Tensor, log_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale index of the integers k = y / step (so the step divides the mean, shifts the scale)."""
        mean, log_scale = self.hyper(kz)
        ls = log_step[:, :, None, None]
        mean = mean * torch.exp(-ls)
        scale_index = (log_scale - ls - math.log(SCALE_MIN)) / LOG_SCALE_STEP
        return mean, scale_index

    def reconstruct(self, k: torch.Tensor, log_step: torch.Tensor) -> torch.Tensor:
        return self.synthesis(k * torch.exp(log_step)[:, :, None, None])


class ShallowEncoder(nn.Module):
    def __init__(self, arch: Architecture = DEFAULT_ARCHITECTURE) -> None:
        super().__init__()
        self.analysis = Analysis(arch)
        self.hyper_analysis = HyperAnalysis(arch)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def z_bits(kz: torch.Tensor, z_log_scale: torch.Tensor) -> torch.Tensor:
    """Bits of z under a zero-mean per-channel Laplace (per image, (N,))."""
    idx = (z_log_scale[:, :, None, None] - math.log(SCALE_MIN)) / LOG_SCALE_STEP
    return laplace_bits(kz, torch.zeros_like(kz), idx.expand_as(kz)).sum(dim=(1, 2, 3))


def rd_from_latents(synthesis: Synthesis, hyper: HyperSynthesis, log_step: torch.Tensor, z_log_scale: torch.Tensor,
                    y: torch.Tensor, z: torch.Tensor, x: torch.Tensor, noise: bool = True,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bpp per image, mse per image, reconstruction) of float latents y, z for image x.

    Rate from noisy latents (``noise``) or rounded ones; distortion always from rounded latents with a
    straight-through gradient (Minnen & Singh 2020's mixed quantisation)."""

    def uniform(t: torch.Tensor) -> torch.Tensor:
        return torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype) - 0.5

    kz_hard = round_ste(z.clamp(-LATENT_LIMIT, LATENT_LIMIT))
    kz_rate = z + uniform(z) if noise else kz_hard
    mean, log_scale = hyper(kz_hard)
    ls = log_step[:, :, None, None]
    scale_index = (log_scale - ls - math.log(SCALE_MIN)) / LOG_SCALE_STEP
    k = (y * torch.exp(-ls)).clamp(-LATENT_LIMIT, LATENT_LIMIT)
    k_hard = round_ste(k)
    k_rate = k + uniform(k) if noise else k_hard
    bits = laplace_bits(k_rate, mean * torch.exp(-ls), scale_index.clamp(0, SCALE_BINS - 1)).sum(dim=(1, 2, 3))
    bits = bits + z_bits(kz_rate, z_log_scale)
    recon = synthesis(k_hard * torch.exp(ls))
    n, _, h, w = x.shape
    return bits / (h * w), ((recon - x) ** 2).mean(dim=(1, 2, 3)), recon


def rd_forward(encoder: ShallowEncoder, decoder: ShallowDecoder, x: torch.Tensor, q: torch.Tensor,
               noise: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training pass: (bpp per image, mse per image, reconstruction)."""
    log_step, z_log_scale = decoder.steps(q)
    y = encoder.analysis(x)
    return rd_from_latents(decoder.synthesis, decoder.hyper, log_step, z_log_scale, y, encoder.hyper_analysis(y),
                           x, noise)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def decoder_macs_per_pixel(arch: Architecture = DEFAULT_ARCHITECTURE) -> dict[str, float]:
    """Multiply-accumulates per decoded pixel, by part (biases and activations not counted)."""
    m, c, z, h, s = (arch.latent_channels, arch.synthesis_channels, arch.hyper_channels, arch.hyper_hidden,
                     arch.latent_stride)
    # A stride-t transposed conv with kernel 2t touches 2x2 inputs per output position.
    hyper = 4 * z * h / (2 * s) ** 2 + 4 * h * 2 * m / s**2
    synthesis = 4 * m * c / (s // 4) ** 2 + c * c / (s // 4) ** 2 + 4 * c * 3
    dequantise = m / s**2
    return {"hyper": hyper, "synthesis": synthesis, "dequantise": dequantise,
            "total": hyper + synthesis + dequantise}


__all__ = ["ShallowEncoder", "ShallowDecoder", "rd_forward", "quality_lambda", "decoder_macs_per_pixel"]
