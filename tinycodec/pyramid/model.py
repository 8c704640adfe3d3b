"""The networks of the pyramid family, in floating point (training, refinement, synthesis at decode time).

Data flow (decoder side; everything left of ``synthesis`` is bit-exact integer work, see fixedpoint.py)::

    bitstream --entropy decode, 4 passes per grid--> integer grids y_g   (context model: neighbours + parent)
    y_g * step_g(q) --bilinear upsampling to full size--> 9 x H x W --synthesis (1x1 MLP, 2 3x3 residuals)--> RGB

and the encoder side: ``AmortisedEncoder(image, q)`` predicts the float grids in one pass; dividing by
``step_g(q)`` and rounding gives the integers that are coded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..laplace import LATENT_LIMIT, LOG_SCALE_STEP, SCALE_BINS, SCALE_MIN
from . import layout

# Quality index q in 0..100 -> Lagrangian lambda (rate in bits per pixel + lambda * MSE on [0, 1] images).
LAMBDA_MIN = 150.0
LAMBDA_MAX = 12000.0

SYNTHESIS_HIDDEN = (40, 16)
CONTEXT_HIDDEN = (12, 12)


def quality_lambda(q: torch.Tensor | float) -> torch.Tensor | float:
    t = q / layout.MAX_QUALITY
    if isinstance(t, torch.Tensor):
        return LAMBDA_MIN * torch.exp(t * math.log(LAMBDA_MAX / LAMBDA_MIN))
    return LAMBDA_MIN * math.exp(t * math.log(LAMBDA_MAX / LAMBDA_MIN))


def pointwise_mlp(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """1x1 convolutions with ReLU between them, run as matrix products over channels on an (N*H*W, C)
    view: the same result, 2-3x as fast on a CPU forward and backward (PyTorch's CPU backward of a 1x1
    convolution takes its slow im2col path; a 2-D product fuses the bias; ReLU runs in place when no
    gradient is needed)."""
    n, _, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(n * h * w, -1)
    inplace = not torch.is_grad_enabled()
    for i, conv in enumerate(convs):
        y = F.linear(y, conv.weight.view(conv.out_channels, conv.in_channels), conv.bias)
        if i < len(convs) - 1:
            y = F.relu(y, inplace=inplace)
    return y.view(n, h, w, -1).permute(0, 3, 1, 2)


def edge_pad(x: torch.Tensor, p: int = 1) -> torch.Tensor:
    return F.pad(x, (p, p, p, p), mode="replicate")


class QuantiserSteps(nn.Module):
    """Quantisation step of each grid as a function of quality: log step = a_g + b_g * q / 100."""

    def __init__(self) -> None:
        super().__init__()
        n = len(layout.GRIDS)
        self.log_step_at_0 = nn.Parameter(torch.zeros(n))
        self.log_step_slope = nn.Parameter(torch.full((n,), -2.0))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (N,) -> (N, grids) steps."""
        t = (q.float() / layout.MAX_QUALITY)[:, None]
        return torch.exp(self.log_step_at_0[None] + self.log_step_slope[None] * t)


class Synthesis(nn.Module):
    """Upsampled dequantised grids -> RGB: 1x1 layers, then two 3x3 residual layers on the 3 output channels."""

    def __init__(self) -> None:
        super().__init__()
        widths = (layout.LATENT_CHANNELS, *SYNTHESIS_HIDDEN, 3)
        self.pointwise = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(widths[:-1], widths[1:]))
        self.residual = nn.ModuleList(nn.Conv2d(3, 3, 3) for _ in range(2))
        for conv in self.residual:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = pointwise_mlp(self.pointwise, features)
        h = h + F.relu(self.residual[0](edge_pad(h)))
        return h + self.residual[1](edge_pad(h)) + 0.5


def upsample_grids(grids: list[torch.Tensor]) -> torch.Tensor:
    """Dequantised grids in coding order -> (N, LATENT_CHANNELS, H, W) in level order (finest first)."""
    by_level: list[torch.Tensor] = []
    for g, x in zip(layout.GRIDS, grids):
        if g.level:
            x = F.interpolate(x, scale_factor=g.stride, mode="bilinear", align_corners=False)
        by_level.append(x)
    return torch.cat(by_level[::-1], dim=1)


class ContextModel(nn.Module):
    """Context features (see layout.py) -> (mean, scale index) of a discretised Laplace, per element."""

    def __init__(self) -> None:
        super().__init__()
        widths = (layout.CONTEXT_FEATURES, *CONTEXT_HIDDEN, 2)
        self.layers = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(widths[:-1], widths[1:]))
        nn.init.zeros_(self.layers[-1].weight)
        with torch.no_grad():
            self.layers[-1].bias.copy_(torch.tensor([0.0, math.log(2.0 / SCALE_MIN) / LOG_SCALE_STEP]))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = pointwise_mlp(self.layers, features)
        return h[:, :1], h[:, 1:]


def _shift(x: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    """y[i, j] = x[i + di, j + dj], zero outside."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1))
    return p[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w]


def context_features(grid: torch.Tensor, parent: torch.Tensor | None, parent_stride: int,
                     q: torch.Tensor) -> torch.Tensor:
    """Every element's context at once, masked as the pass that decodes it sees it (training and refinement).

    grid: (N, 1, h, w) values; parent: (N, 1, h / s, w / s) or None. Returns (N, CONTEXT_FEATURES, h, w).
    """
    n, _, h, w = grid.shape
    pass_of = torch.from_numpy(layout.pass_of_phase()).repeat(h // 2 + 1, w // 2 + 1)[:h, :w].to(grid.device)
    available = torch.from_numpy(layout.neighbour_available()).to(grid.device)  # (pass, neighbour)
    feats = []
    for k, (di, dj) in enumerate(layout.NEIGHBOURS):
        mask = available[:, k][pass_of].to(grid.dtype)
        feats.append(_shift(grid, di, dj) * mask)
    for di, dj in layout.PARENT_TAPS:
        if parent is None:
            feats.append(torch.zeros_like(grid))
        else:
            t = _shift(parent, di, dj)
            if parent_stride > 1:
                t = t.repeat_interleave(parent_stride, dim=-2).repeat_interleave(parent_stride, dim=-1)
            feats.append(t)
    onehot = F.one_hot(pass_of, len(layout.PASS_PHASES)).permute(2, 0, 1).to(grid.dtype)
    feats.append(onehot[None].expand(n, -1, -1, -1))
    feats.append((q.to(grid.dtype) / layout.MAX_QUALITY).view(n, 1, 1, 1).expand(n, 1, h, w))
    return torch.cat(feats, dim=1)


def laplace_bits(y: torch.Tensor, mean: torch.Tensor, scale_index: torch.Tensor) -> torch.Tensor:
    """-log2 P(y) under a Laplace(mean, scale) discretised to integers (probability floored at 2^-16)."""
    scale = SCALE_MIN * torch.exp(scale_index.clamp(0, SCALE_BINS - 1) * LOG_SCALE_STEP)
    d = (y - mean).abs()
    upper_arg = (0.5 - d) / scale
    upper = torch.where(upper_arg <= 0, 0.5 * torch.exp(upper_arg.clamp(max=0)),
                        1 - 0.5 * torch.exp(-upper_arg.clamp(min=0)))
    lower = 0.5 * torch.exp((-0.5 - d) / scale)
    p = (upper - lower).clamp(min=2.0**-16)
    return -torch.log2(p)


def grid_rate(values: list[torch.Tensor], context: ContextModel, q: torch.Tensor) -> torch.Tensor:
    """Bits of each image (N,) for integer-valued (or noisy) grids in coding order."""
    total = torch.zeros(values[0].shape[0], device=values[0].device)
    for g, y in zip(layout.GRIDS, values):
        parent_grid = layout.parent_of(g)
        parent = values[parent_grid.index] if parent_grid else None
        stride = 2 if parent_grid and parent_grid.level > g.level else 1
        mean, sidx = context(context_features(y, parent, stride, q))
        total = total + laplace_bits(y, mean, sidx).sum(dim=(1, 2, 3))
    return total


def _conv(a: int, b: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(a, b, 3, stride=stride, padding=1)


class AmortisedEncoder(nn.Module):
    """Image + quality -> float grids (in decoder units), one U-Net pass; no size limit but a multiple of 64.

    The encoder runs where images are made (a server, a phone's camera pipeline), not on the decoding
    device, so it may be ~10x the decoder's cost; its top-down path lets each level's output know what the
    coarser levels already carry.
    """

    WIDTHS = (16, 32, 48, 64, 64, 64, 64)

    def __init__(self) -> None:
        super().__init__()
        w = self.WIDTHS
        self.down = nn.ModuleList()
        for level in range(layout.LEVELS):
            cin = 4 if level == 0 else w[level - 1]
            self.down.append(nn.Sequential(_conv(cin, w[level], 1 if level == 0 else 2), nn.ReLU(),
                                           _conv(w[level], w[level]), nn.ReLU()))
        self.reduce = nn.ModuleList(nn.Conv2d(w[level + 1], w[level], 1) for level in range(layout.LEVELS - 1))
        self.merge = nn.ModuleList(nn.Sequential(_conv(2 * w[level], w[level]), nn.ReLU())
                                   for level in range(layout.LEVELS - 1))
        self.heads = nn.ModuleList(nn.Conv2d(w[level], layout.LEVEL_CHANNELS[level], 1)
                                   for level in range(layout.LEVELS))

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> list[torch.Tensor]:
        n, _, h, w = x.shape
        t = (q.float() / layout.MAX_QUALITY).view(n, 1, 1, 1).expand(n, 1, h, w)
        skips = []
        f = torch.cat([x - 0.5, t], dim=1)
        for block in self.down:
            f = block(f)
            skips.append(f)
        outs: list[torch.Tensor | None] = [None] * layout.LEVELS
        u = skips[-1]
        outs[-1] = self.heads[-1](u)
        for level in reversed(range(layout.LEVELS - 1)):
            up = F.interpolate(self.reduce[level](u), scale_factor=2, mode="nearest")
            u = self.merge[level](torch.cat([up, skips[level]], dim=1))
            outs[level] = self.heads[level](u)
        grids = []
        for g in layout.GRIDS:
            grids.append(outs[g.level][:, g.channel : g.channel + 1])
        return grids


class PyramidDecoder(nn.Module):
    """Everything a decoding device holds: quantiser steps, context model, synthesis."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = QuantiserSteps()
        self.context = ContextModel()
        self.synthesis = Synthesis()

    def reconstruct(self, integer_grids: list[torch.Tensor], q: torch.Tensor) -> torch.Tensor:
        steps = self.steps(q)
        deq = [y * steps[:, g.index].view(-1, 1, 1, 1) for g, y in zip(layout.GRIDS, integer_grids)]
        return self.synthesis(upsample_grids(deq))


def noise(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise on [-1/2, 1/2), the stand-in for rounding in rate estimates."""
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 0.5


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def rd_forward(encoder: AmortisedEncoder, decoder: PyramidDecoder, x: torch.Tensor, q: torch.Tensor,
               noise: bool = True, noisy_distortion: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training pass: (bpp per image, mse per image, reconstruction)."""
    return rd_from_latents(encoder(x, q), decoder, x, q, noise, noisy_distortion)


def rd_from_latents(latents: list[torch.Tensor], decoder: PyramidDecoder, x: torch.Tensor, q: torch.Tensor,
                    noise: bool = True, noisy_distortion: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rate from noisy latents (``noise``) or rounded ones; distortion from rounded latents with a straight-through
    gradient, or (``noisy_distortion``, early training: smoother gradients) from the same noisy latents."""
    steps = decoder.steps(q)
    scaled = [y / steps[:, g.index].view(-1, 1, 1, 1) for g, y in zip(layout.GRIDS, latents)]
    scaled = [s.clamp(-LATENT_LIMIT, LATENT_LIMIT) for s in scaled]
    hard = [round_ste(s) for s in scaled]
    for_rate = [s + torch.empty_like(s).uniform_(-0.5, 0.5) for s in scaled] if noise else hard
    bits = grid_rate(for_rate, decoder.context, q)
    recon = decoder.reconstruct(for_rate if noisy_distortion and noise else hard, q)
    n, _, h, w = x.shape
    bpp = bits / (h * w)
    mse = ((recon - x) ** 2).mean(dim=(1, 2, 3))
    return bpp, mse, recon


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def decoder_macs_per_pixel() -> dict[str, float]:
    """Multiply-accumulates per decoded pixel, by part (bias additions and ReLUs not counted)."""
    latents_per_pixel = sum(layout.LEVEL_CHANNELS[level] / 4**level for level in range(layout.LEVELS))
    widths = (layout.CONTEXT_FEATURES, *CONTEXT_HIDDEN, 2)
    context = latents_per_pixel * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    sw = (layout.LATENT_CHANNELS, *SYNTHESIS_HIDDEN, 3)
    synthesis = sum(a * b for a, b in zip(sw[:-1], sw[1:])) + 2 * 3 * 3 * 9
    upsampling = 4 * sum(layout.LEVEL_CHANNELS[1:])  # bilinear: 4 taps per output pixel per upsampled grid
    dequantise = latents_per_pixel
    return {"context": context, "synthesis": synthesis, "upsampling": upsampling, "dequantise": dequantise,
            "total": context + synthesis + upsampling + dequantise}
