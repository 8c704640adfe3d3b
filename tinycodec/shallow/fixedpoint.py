"""The hyper-synthesis in integers: quantised z -> the mean and scale bin of every coded latent, bit-exactly.

Weights are integers (at most WEIGHT_BITS bits) with a power-of-two scale per layer (first layer) or per output
channel (second layer); hidden activations are integers in units of 2^-ACT_BITS, clipped to ACT_LIMIT. The
transposed convolutions run in float64, which is exact here: every product and partial sum is an integer
below 2^53 (checked at load from the weights' bounds), so any summation order on any machine gives the same
result. The per-quality factors (inverse quantiser steps, scale offsets) are integer tables in the weights
file: no ``exp`` or ``log`` is evaluated at decode time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..laplace import LATENT_LIMIT, LOG_SCALE_STEP, MEAN_UNITS, SCALE_BINS, SCALE_MIN
from .layout import MAX_QUALITY, Architecture
from .synthesis import tconv, tconv_matrix

if TYPE_CHECKING:  # PyTorch only where weights are made or refined, never to decode
    from .model import HyperSynthesis, QuantiserSteps

WEIGHT_BITS = 10
ACT_BITS = 8
ACT_LIMIT = 1 << 16  # hidden activations are clipped to 256.0 in real units
MEAN_BITS = 32  # fraction bits of the inverse-step factors
EXACT_LIMIT = 1 << 53
QUALITIES = MAX_QUALITY + 1


def _exponent(w: np.ndarray) -> int:
    """Largest s with max|w| * 2^s within the weight range."""
    top = float(np.abs(w).max())
    return 0 if top == 0 else int(math.floor(math.log2(((1 << (WEIGHT_BITS - 1)) - 1) / top)))


def quantise_hyper(hyper: HyperSynthesis, steps: QuantiserSteps) -> dict[str, np.ndarray]:
    """Float hyper-synthesis and quantiser steps -> the integer tensors of the decoder file."""
    import torch

    w1 = hyper.up1.weight.detach().double().numpy()
    b1 = hyper.up1.bias.detach().double().numpy()
    s1 = _exponent(w1)
    w2 = hyper.up2.weight.detach().double().numpy().copy()  # (hidden, 2M, 4, 4)
    b2 = hyper.up2.bias.detach().double().numpy().copy()
    m = w2.shape[1] // 2
    # Scale outputs in units of the table's log-scale step, so that the bin is a rounding away.
    w2[:, m:] /= LOG_SCALE_STEP
    b2[m:] /= LOG_SCALE_STEP
    s2 = np.array([_exponent(w2[:, c]) for c in range(w2.shape[1])], dtype=np.int64)
    out = {"hyper.up1.weight": np.round(w1 * 2.0**s1).astype(np.int16),
           "hyper.up1.bias": np.round(b1 * 2.0**s1).astype(np.int64),
           "hyper.up1.exponent": np.array([s1], dtype=np.int64),
           "hyper.up2.weight": np.round(w2 * 2.0**s2[None, :, None, None]).astype(np.int16),
           "hyper.up2.bias": np.round(b2 * 2.0 ** (s2 + ACT_BITS)).astype(np.int64),
           "hyper.up2.exponent": s2}
    q = torch.arange(QUALITIES)
    with torch.no_grad():
        log_step, z_log_scale = (t.double().numpy() for t in steps(q))
    units = 2.0 ** (s2[:m] + ACT_BITS)[None]  # of the mean outputs, per channel
    out["quality.inv_step"] = np.round(MEAN_UNITS * 2.0**MEAN_BITS * np.exp(-log_step) / units).astype(np.int64)
    offset = (log_step + math.log(SCALE_MIN)) / LOG_SCALE_STEP  # bin = log_scale/step - offset
    out["quality.scale_offset"] = np.round(offset * 2.0 ** (s2[m:] + ACT_BITS)[None]).astype(np.int64)
    z_bin = np.round((z_log_scale - math.log(SCALE_MIN)) / LOG_SCALE_STEP)
    out["quality.z_scale_bin"] = np.clip(z_bin, 0, SCALE_BINS - 1).astype(np.int64)
    out["quality.step"] = np.exp(log_step).astype(np.float32)  # dequantisation: synthesis side, need not be exact
    return out


def check_hyper(t: dict[str, np.ndarray], arch: Architecture) -> None:
    """Raise ValueError unless the tensors have the architecture's shapes and keep every sum exact in float64."""
    z, hidden, m = arch.hyper_channels, arch.hyper_hidden, arch.latent_channels
    expected = {"hyper.up1.weight": (z, hidden, 4, 4), "hyper.up1.bias": (hidden,),
                "hyper.up1.exponent": (1,), "hyper.up2.weight": (hidden, 2 * m, 4, 4),
                "hyper.up2.bias": (2 * m,), "hyper.up2.exponent": (2 * m,),
                "quality.inv_step": (QUALITIES, m), "quality.scale_offset": (QUALITIES, m),
                "quality.z_scale_bin": (QUALITIES, z), "quality.step": (QUALITIES, m)}
    for k, shape in expected.items():
        if k not in t or tuple(t[k].shape) != shape:
            raise ValueError(f"{k}: expected shape {shape}")
    w1, w2 = t["hyper.up1.weight"], t["hyper.up2.weight"]
    limit = 1 << (WEIGHT_BITS - 1)
    if np.abs(w1.astype(np.int64)).max() >= limit or np.abs(w2.astype(np.int64)).max() >= limit:
        raise ValueError("weights outside their bit range")
    s1, s2 = int(t["hyper.up1.exponent"][0]), t["hyper.up2.exponent"]
    if not 0 <= s1 <= 40 or s2.min() < 0 or s2.max() > 40:
        raise ValueError("weight exponents out of range")
    # A stride-2, 4x4 transposed conv sums 2x2 taps per input channel.
    first = 4 * z * LATENT_LIMIT * limit + np.abs(t["hyper.up1.bias"]).max()
    second = 4 * hidden * ACT_LIMIT * limit + np.abs(t["hyper.up2.bias"]).max()
    mean_product = (second + 1) * np.abs(t["quality.inv_step"]).max()
    if max(first, second) >= EXACT_LIMIT or mean_product >= 1 << 62 or np.abs(t["quality.scale_offset"]).max() >= 1 << 40:
        raise ValueError("sums could exceed the exact range")
    if t["quality.z_scale_bin"].min() < 0 or t["quality.z_scale_bin"].max() >= SCALE_BINS:
        raise ValueError("z scale bins out of range")


def _shift_round(x: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """round(x / 2^bits), ties up, in int64 (per-channel ``bits`` broadcast along axis 0)."""
    return (x + (np.int64(1) << (bits - 1))) >> bits


def prepare(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The integer hyper-synthesis of a (checked) weights file in the form :func:`entropy_parameters` runs:
    float64 tconv matrices holding the integer weights, and the per-quality tables."""
    out = {k: v for k, v in t.items() if k.startswith(("hyper.", "quality."))}
    out["hyper.up1.matrix"] = tconv_matrix(t["hyper.up1.weight"], np.float64)
    out["hyper.up2.matrix"] = tconv_matrix(t["hyper.up2.weight"], np.float64)
    return out


def entropy_parameters(t: dict[str, np.ndarray], kz: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """kz (Z, h, w) integers -> (mean in 1/MEAN_UNITS, scale bin) of every latent, both (M, 4h, 4w) int64.
    ``t``: :func:`prepare` of the weights."""
    s1 = int(t["hyper.up1.exponent"][0])
    acc = tconv(np.asarray(kz, dtype=np.float64), t["hyper.up1.matrix"], t["hyper.up1.bias"], 2)
    # ReLU, then to ACT_BITS fraction bits (floor: exact in float64, division by a power of two)
    hidden = np.minimum(np.floor(np.maximum(acc, 0) * 2.0 ** (ACT_BITS - s1)), ACT_LIMIT)
    out = tconv(hidden, t["hyper.up2.matrix"], t["hyper.up2.bias"], 2).astype(np.int64)
    m = out.shape[0] // 2
    mean = _shift_round(out[:m] * t["quality.inv_step"][quality][:, None, None], np.int64(MEAN_BITS))
    units = (t["hyper.up2.exponent"][m:] + ACT_BITS)[:, None, None]
    scale = _shift_round(out[m:] - t["quality.scale_offset"][quality][:, None, None], units)
    return (np.clip(mean, -LATENT_LIMIT * MEAN_UNITS, LATENT_LIMIT * MEAN_UNITS),
            np.clip(scale, 0, SCALE_BINS - 1))


def dequantised_hyper(t: dict[str, np.ndarray], arch: Architecture) -> HyperSynthesis:
    """A float HyperSynthesis equal to the integer one up to its rounding (for refinement's gradients)."""
    import torch

    from .model import HyperSynthesis

    net = HyperSynthesis(arch)
    m = arch.latent_channels
    s1, s2 = int(t["hyper.up1.exponent"][0]), t["hyper.up2.exponent"].astype(np.float64)
    w2 = t["hyper.up2.weight"] / 2.0 ** s2[None, :, None, None]
    b2 = t["hyper.up2.bias"] / 2.0 ** (s2 + ACT_BITS)
    w2[:, m:] *= LOG_SCALE_STEP
    b2[m:] *= LOG_SCALE_STEP
    with torch.no_grad():
        net.up1.weight.copy_(torch.from_numpy(t["hyper.up1.weight"] / 2.0**s1))
        net.up1.bias.copy_(torch.from_numpy(t["hyper.up1.bias"] / 2.0**s1))
        net.up2.weight.copy_(torch.from_numpy(w2))
        net.up2.bias.copy_(torch.from_numpy(b2))
    return net
