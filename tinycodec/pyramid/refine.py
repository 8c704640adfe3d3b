"""Effort "refine": gradient steps on the latents alone, the decoder fixed, under rate + lambda * MSE.

Starts from the amortised encoder's prediction, so a few dozen steps already pay (Yang & Mandt 2023,
"Computationally-efficient neural image compression with shallow decoders": amortised then iterative
encoding). The rate is the fixed-point context model's float twin; the file is coded with the integers.
"""

from __future__ import annotations

import math

import torch

from . import layout
from .model import LATENT_LIMIT, grid_rate, noise, quality_lambda, round_ste, upsample_grids
from .weights import LoadedDecoder

MAX_REFINE_STEPS = 10_000
LEARNING_RATE = 0.1  # in units of one quantisation step


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_REFINE_STEPS:
        raise ValueError(f"refinement steps must be an integer from 1 to {MAX_REFINE_STEPS}, not {steps!r}")
    return steps


def refine_latents(latents: list[torch.Tensor], x: torch.Tensor, dec: LoadedDecoder, quality: int,
                   steps: int) -> list[torch.Tensor]:
    """Float grids (decoder units) -> refined float grids (decoder units); x: the padded image (1, 3, H, W)."""
    check_steps(steps)
    net = dec.network
    q = torch.tensor([quality])
    step_sizes = net.steps(q)[0]
    z = [(y / step_sizes[g.index]).detach().clone().requires_grad_(True) for g, y in zip(layout.GRIDS, latents)]
    opt = torch.optim.Adam([{"params": z, "lr": LEARNING_RATE, "base": LEARNING_RATE}])
    optimise(z, opt, steps, net.synthesis, net.context, step_sizes, q, x)
    with torch.no_grad():
        return [t.detach().clamp(-LATENT_LIMIT, LATENT_LIMIT) * step_sizes[g.index] for g, t in zip(layout.GRIDS, z)]


def optimise(z: list[torch.Tensor], opt: torch.optim.Optimizer, steps: int, synthesis: torch.nn.Module,
             context: torch.nn.Module, step_sizes: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> None:
    """``steps`` Adam steps on rate + lambda * MSE (shared by refine and overfit): cosine decay from each group's
    ``base`` learning rate; rate from noisy latents, then rounded ones for the last fifth; distortion from
    rounded latents with straight-through gradients."""
    lam = quality_lambda(float(q[0]))
    pixels = x.shape[-2] * x.shape[-1]
    hard_from = int(steps * 0.8)  # the last steps see the rounding the file will have, in rate too
    generator = torch.Generator(device=x.device).manual_seed(0)  # the same image gives the same file
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = group["base"] * 0.5 * (1 + math.cos(math.pi * i / steps))
        clipped = [t.clamp(-LATENT_LIMIT, LATENT_LIMIT) for t in z]
        hard = [round_ste(t) for t in clipped]
        for_rate = hard if i >= hard_from else [t + noise(t, generator) for t in clipped]
        bits = grid_rate(for_rate, context, q)[0]
        recon = synthesis(upsample_grids([h * step_sizes[g.index] for g, h in zip(layout.GRIDS, hard)]))
        loss = bits / pixels + lam * torch.mean((recon - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
