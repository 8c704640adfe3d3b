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
from dataclasses import dataclass

import numpy as np
import torch

from .networks import codec_network
from .options import MAX_REFINE_STEPS as MAX_STEPS, REFINE_STEPS as DEFAULT_STEPS, SCALE_DEPTHS  # noqa: F401
from .quantize import BITS, LEVELS, bin_centre_codes
from .tiling import Span, decoder_halo, spans
from .zoo import WeightsEntry

# Weight of the rate term against the squared error (grey levels squared per pixel) per unit of mean
# absolute difference between neighbouring 8-bit codes. Chosen per scale level on training images by
# BD-rate against unrefined tinycodec (tools/tune_refine.py; figures in weights/README.md).
RATE_WEIGHT = {4: 2.0, 16: 0.5, 64: 0.5, 256: 0.5}
LEARNING_RATE = 2.0  # Adam step, in 8-bit code units
REFINE_WINDOW = 1024  # output pixels per window side (plus context: 8 to 128 pixels); a Kodak image is one window


def check_steps(steps: int) -> None:
    if not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"refine must be 0..{MAX_STEPS} steps, not {steps}")


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
        centre = bin_centre_codes(clamped, float(1 << (BITS - planes)))
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
    check_steps(steps)
    if steps == 0:
        return latent
    lo3, span3 = lo[:, None, None], (hi - lo)[:, None, None]
    codes = np.clip((latent - lo3) / span3 * LEVELS, 0, LEVELS).astype(np.float32)
    depth = SCALE_DEPTHS[scale]
    problem = _Problem(
        decoder=_decoder(entry, scale, device), rgb=rgb, codes=codes, planes=planes, steps=steps,
        weight=RATE_WEIGHT[scale] if rate_weight is None else rate_weight, step=1 << depth,
        halo=decoder_halo(depth), device=device,
        lo=torch.from_numpy(np.ascontiguousarray(lo3, dtype=np.float32)).to(device),
        span=torch.from_numpy(np.ascontiguousarray(span3, dtype=np.float32)).to(device),
    )
    core = max(1, window // problem.step)
    with torch.enable_grad():
        for rs in spans(codes.shape[1], core, 2 * problem.halo):
            for cs in spans(codes.shape[2], core, 2 * problem.halo):
                problem.refine_window(rs, cs)
    return (lo3 + codes / np.float32(LEVELS) * span3).astype(np.float32)


@dataclass
class _Problem:
    """One image's refinement: the fixed decoder and objective, and the codes being refined (in place)."""

    decoder: torch.nn.Module
    rgb: np.ndarray  # (H, W, 3) uint8, the target
    codes: np.ndarray  # (3, h, w) float32 8-bit codes, refined window by window
    planes: int
    steps: int
    weight: float  # of the rate stand-in
    step: int  # pixels per latent element along each axis, 2**k
    halo: int  # the decoder's receptive field, in latent elements
    device: str
    lo: torch.Tensor  # (3, 1, 1)
    span: torch.Tensor  # (3, 1, 1)

    def refine_window(self, rs: Span, cs: Span) -> None:
        """Refine codes[:, rs.start:rs.stop, cs.start:cs.stop], the rest of the window held fixed."""
        step, halo = self.step, self.halo
        lh, lw = self.codes.shape[1:]
        context = self.codes[:, rs.outer_start : rs.outer_stop, cs.outer_start : cs.outer_stop]
        fixed = torch.from_numpy(np.ascontiguousarray(context)).to(self.device)
        core = (slice(None), slice(rs.start - rs.outer_start, rs.stop - rs.outer_start),
                slice(cs.start - cs.outer_start, cs.stop - cs.outer_start))
        mask = torch.zeros_like(fixed, dtype=torch.bool)
        mask[core] = True
        n_codes = 3 * (rs.stop - rs.start) * (cs.stop - cs.start)
        # Pixels counted: those the refined codes reach (one decoder halo around them), inside the real
        # image; their receptive field lies inside the window (two halos of context) or meets the border.
        y0, x0 = max(rs.start - halo, 0) * step, max(cs.start - halo, 0) * step
        y1 = min(min(rs.stop + halo, lh) * step, self.rgb.shape[0])
        x1 = min(min(cs.stop + halo, lw) * step, self.rgb.shape[1])
        oy, ox = y0 - rs.outer_start * step, x0 - cs.outer_start * step
        target = self.rgb[y0:y1, x0:x1].transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
        target = torch.from_numpy(target).to(self.device)
        variable = fixed.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([variable], lr=LEARNING_RATE)
        best_loss, best = float("inf"), None
        for i in range(self.steps + 1):
            quantised = _quantised(torch.where(mask, variable, fixed), self.planes)
            decoded = self.decoder((self.lo + quantised / LEVELS * self.span)[None])[0]
            error = decoded[:, oy : oy + (y1 - y0), ox : ox + (x1 - x0)] - target
            # Squared error in grey levels per code-sized patch of pixels, plus the rate stand-in, per code.
            loss = (error.square().sum() * 255.0**2 / step**2 + self.weight * _total_variation(quantised)) / n_codes
            if loss.item() < best_loss:  # step 0 (the encoder's own codes) always sets it
                best_loss, best = loss.item(), torch.round(quantised.detach()[core])
            if i == self.steps:
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        self.codes[:, rs.start : rs.stop, cs.start : cs.stop] = best.cpu().numpy()
