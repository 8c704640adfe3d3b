"""Latent refinement: the encoder searches for the codes the fixed decoder turns into the closest image.

The encoding network is a one-shot guess of the latent, made by 5,427
parameters. The decoder is fixed by the file format, so any latent codes are a
valid file, and the best codes for an image are the ones whose decoding is
closest to it at the fewest bits. ``refine_latent`` searches for them by
gradient descent through the decoder (Adam on the 8-bit codes, the product's
own bit-plane quantiser in the forward pass, straight-through gradients), with
a total-variation term on the codes standing in for their cost in bits (the
entropy coder predicts each code from its neighbours, so a smoother latent is
a cheaper one). Nothing about decoding changes: a refined file is an ordinary
``.tcz`` for every decoder.

Measured on training images (never Kodak; see weights/README.md and
tools/tune_refine.py), refinement lifts PSNR and lowers bits at every scale
level, most at scale 4, where the one-block encoder is furthest from what its
decoder could be given.

Memory stays bounded: the latent is refined window by window (Gauss-Seidel:
each window sees its already-refined neighbours), each window with the
decoder's full receptive field around it, so the loss of every pixel it counts
is the loss untiled decoding would give.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .models import SCALE_DEPTHS
from .networks import codec_network
from .quantize import BITS, LEVELS
from .tiling import decoder_halo, spans
from .zoo import WeightsEntry

# Weight of the rate term against the squared error (grey levels squared per pixel) per unit of mean
# absolute difference between neighbouring 8-bit codes. Chosen per scale level on training images by
# BD-rate against unrefined tinycodec (tools/tune_refine.py; figures in weights/README.md).
RATE_WEIGHT = {4: 2.0, 16: 0.5, 64: 0.5, 256: 0.5}
DEFAULT_STEPS = 30  # what `tcenc --refine` without a number runs (tuned with RATE_WEIGHT)
MAX_STEPS = 1000
LEARNING_RATE = 2.0  # Adam step, in 8-bit code units
REFINE_WINDOW = 1024  # output pixels per window side (plus context: 8 to 128 pixels); a Kodak image is one window


@functools.lru_cache(maxsize=8)
def _decoder(entry: WeightsEntry, scale: int, device: str) -> torch.nn.Module:
    module = codec_network(entry, scale, "decoder").build().to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _quantised(codes: torch.Tensor, planes: int) -> torch.Tensor:
    """The bin centre the decoder will see for each code (forward), the identity's gradient (backward)."""
    clamped = codes.clamp(0, LEVELS)
    with torch.no_grad():
        step = float(1 << (BITS - planes))
        centre = torch.floor(torch.round(clamped) / step) * step + (step - 1) / 2
    return clamped + (centre - clamped).detach()


def _total_variation(codes: torch.Tensor) -> torch.Tensor:
    return ((codes[:, 1:, :] - codes[:, :-1, :]).abs().sum()
            + (codes[:, :, 1:] - codes[:, :, :-1]).abs().sum())


def refine_latent(entry: WeightsEntry, scale: int, rgb: np.ndarray, latent: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray, planes: int, steps: int, *, rate_weight: float | None = None,
                  device: str = "cpu", window: int = REFINE_WINDOW) -> np.ndarray:
    """A latent (3, h, w) whose codes decode closer to ``rgb`` (H, W, 3 uint8) at fewer bits.

    latent: the encoding network's output for ``rgb``; lo, hi: the per-channel
    range the file will carry (kept: refined codes stay inside it). Returns a
    float32 latent lying exactly on 8-bit codes, so that
    :func:`tinycodec.quantize.quantize` gives the refined symbols. ``steps``
    Adam steps per window; the best codes seen (by the objective, the
    encoder's own among them) are kept, so refinement never ends worse than it
    started. Runs in PyTorch on ``device`` whatever backend ran the encoder.
    """
    if not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"refinement steps must be 0..{MAX_STEPS}, not {steps}")
    if steps == 0:
        return latent
    depth = SCALE_DEPTHS[scale]
    step = 1 << depth
    weight = RATE_WEIGHT[scale] if rate_weight is None else rate_weight
    height, width = rgb.shape[:2]
    lh, lw = latent.shape[1:]
    lo3, span3 = lo[:, None, None], (hi - lo)[:, None, None]
    codes = np.clip((latent - lo3) / span3 * LEVELS, 0, LEVELS).astype(np.float32)
    decoder = _decoder(entry, scale, device)
    lo_t = torch.from_numpy(np.ascontiguousarray(lo3, dtype=np.float32)).to(device)
    span_t = torch.from_numpy(np.ascontiguousarray(span3, dtype=np.float32)).to(device)
    halo = decoder_halo(depth)
    core = max(1, window // step)
    with torch.enable_grad():
        for rs in spans(lh, core, 2 * halo):
            for cs in spans(lw, core, 2 * halo):
                _refine_window(decoder, rgb, codes, rs, cs, halo, step, (height, width), planes, steps, weight,
                               lo_t, span_t, device)
    return (lo3 + codes / np.float32(LEVELS) * span3).astype(np.float32)


def _refine_window(decoder, rgb, codes, rs, cs, halo, step, size, planes, steps, weight, lo_t, span_t,
                   device) -> None:
    """Refine codes[:, rs.start:rs.stop, cs.start:cs.stop] in place, the rest of the window fixed."""
    height, width = size
    lh, lw = codes.shape[1:]
    context = codes[:, rs.outer_start : rs.outer_stop, cs.outer_start : cs.outer_stop]
    fixed = torch.from_numpy(np.ascontiguousarray(context)).to(device)
    mask = torch.zeros_like(fixed, dtype=torch.bool)
    core = (slice(None), slice(rs.start - rs.outer_start, rs.stop - rs.outer_start),
            slice(cs.start - cs.outer_start, cs.stop - cs.outer_start))
    mask[core] = True
    # Pixels counted: those the refined codes reach (one decoder halo around them), inside the real image;
    # their receptive field lies inside the window (two halos of context) or meets the latent's border.
    y0, y1 = max(rs.start - halo, 0) * step, min(rs.stop + halo, lh) * step
    x0, x1 = max(cs.start - halo, 0) * step, min(cs.stop + halo, lw) * step
    y1, x1 = min(y1, height), min(x1, width)
    oy, ox = y0 - rs.outer_start * step, x0 - cs.outer_start * step
    target = torch.from_numpy(rgb[y0:y1, x0:x1].transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))
    target = target.to(device)
    n_codes = float(mask.sum().item())
    variable = fixed.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([variable], lr=LEARNING_RATE)
    best_loss, best = float("inf"), fixed[core].clone()
    for i in range(steps + 1):
        quantised = _quantised(torch.where(mask, variable, fixed), planes)
        decoded = decoder((lo_t + quantised / LEVELS * span_t)[None])[0]
        error = decoded[:, oy : oy + (y1 - y0), ox : ox + (x1 - x0)] - target
        # Squared error in grey levels per code-sized patch of pixels, plus the rate stand-in per code.
        loss = (error.square().sum() * 255.0**2 / step**2 + weight * _total_variation(quantised)) / n_codes
        value = loss.item()
        if value < best_loss:
            best_loss, best = value, torch.round(quantised.detach()[core].clamp(0, LEVELS))
        if i == steps:
            break
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    codes[:, rs.start : rs.stop, cs.start : cs.stop] = best.cpu().numpy()
