"""The context model in fixed point: the same integers on every machine, whatever BLAS or backend.

Weights are integers (``round(w * 2^Q)``), activations integers in units of 2^-ACT_BITS, clipped to
[0, ACT_LIMIT]. The export checks that every row of every layer satisfies
``sum |w| * (largest input) + |b| < 2^24``: then every product and partial sum of a matrix product is an
integer below 2^24, exactly representable in float32, so a float32 BLAS computes it exactly in any
summation order (with or without FMA) and the result is the same integer everywhere. Rescaling is floor
division by a power of two, also exact. (On a GPU, TF32 would break this: the decoder evaluates it on the CPU.)
"""

from __future__ import annotations

import numpy as np
import torch

from . import layout
from ..laplace import LATENT_LIMIT, MEAN_UNITS, SCALE_BINS
from .model import ContextModel

ACT_BITS = 6
FIRST_BITS = 10  # first layer: its inputs are integers (latents, q in 0..100), not activations
WEIGHT_BITS = 8
ACT_LIMIT = 1 << 11  # activations are clipped to this (32.0 in real units): keeps the sums of a trained model exact
EXACT_LIMIT = 1 << 24  # float32 represents every integer below this exactly

def quantise_context(model: ContextModel) -> dict[str, np.ndarray]:
    """Float context model -> integer tensors ``context.{i}.weight`` / ``.bias`` (int64)."""
    out: dict[str, np.ndarray] = {}
    n = len(model.layers)
    for i, conv in enumerate(model.layers):
        w = conv.weight.detach().double()[:, :, 0, 0].clone()
        b = conv.bias.detach().double().clone()
        if i == 0:
            w[:, -1] /= layout.MAX_QUALITY  # the integer input is q itself, not q / 100
            wq, bq = w * 2**FIRST_BITS, b * 2**FIRST_BITS
        else:
            wq, bq = w * 2**WEIGHT_BITS, b * 2 ** (WEIGHT_BITS + ACT_BITS)
        if i == n - 1:
            wq[0] *= MEAN_UNITS
            bq[0] *= MEAN_UNITS
        out[f"context.{i}.weight"] = torch.round(wq).long().numpy()
        out[f"context.{i}.bias"] = torch.round(bq).long().numpy()
    check_context(out)
    return out


def _input_bounds(n_inputs: int, first: bool) -> np.ndarray:
    if not first:
        return np.full(n_inputs, ACT_LIMIT, dtype=np.int64)
    bounds = np.ones(n_inputs, dtype=np.int64)  # pass one-hot
    bounds[: len(layout.NEIGHBOURS) + len(layout.PARENT_TAPS)] = LATENT_LIMIT
    bounds[-1] = layout.MAX_QUALITY
    return bounds


def check_context(tensors: dict[str, np.ndarray]) -> None:
    """Refuse (ValueError) integer weights whose sums could leave float32's exact range."""
    layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("context.")})
    if layers != list(range(len(layers))) or not layers:
        raise ValueError("context layers missing")
    for i in layers:
        w, b = tensors.get(f"context.{i}.weight"), tensors.get(f"context.{i}.bias")
        if w is None or b is None or w.dtype != np.int64 or b.dtype != np.int64 or w.ndim != 2 or b.shape != w.shape[:1]:
            raise ValueError(f"context layer {i}: bad tensors")
        worst = np.abs(w) @ _input_bounds(w.shape[1], i == 0) + np.abs(b)
        if worst.max() >= EXACT_LIMIT:
            raise ValueError(f"context layer {i}: a sum could reach {int(worst.max())}, beyond float32's exact integers")


def dequantised_context(tensors: dict[str, np.ndarray]) -> ContextModel:
    """The float model that the integers stand for (rate estimates during refinement)."""
    model = ContextModel()
    n = len(model.layers)
    with torch.no_grad():
        for i, conv in enumerate(model.layers):
            w = torch.from_numpy(tensors[f"context.{i}.weight"]).double()
            b = torch.from_numpy(tensors[f"context.{i}.bias"]).double()
            if i == 0:
                w, b = w / 2**FIRST_BITS, b / 2**FIRST_BITS
                w[:, -1] *= layout.MAX_QUALITY
            else:
                w, b = w / 2**WEIGHT_BITS, b / 2 ** (WEIGHT_BITS + ACT_BITS)
            if i == n - 1:
                w[0] /= MEAN_UNITS
                b[0] /= MEAN_UNITS
            conv.weight.copy_(w[:, :, None, None].float())
            conv.bias.copy_(b.float())
    return model


def _floor_shift(x, bits: int):
    return np.floor(x * np.float32(1.0 / (1 << bits)), out=x) if isinstance(x, np.ndarray) else \
        torch.floor_(x.mul_(1.0 / (1 << bits)))


TORCH_FROM = 4096  # rows: below, numpy (no thread-pool wake-ups per call); above, torch (3x numpy's sgemm here)


def evaluate(tensors: dict[str, np.ndarray], features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer features (N, CONTEXT_FEATURES) -> (mean in 1/MEAN_UNITS, scale bin), both int64, exactly.

    Features: latents in [-LATENT_LIMIT, LATENT_LIMIT], pass one-hot in {0, 1}, q in 0..100 (any float dtype
    holding those integers). Either library computes the same integers (every sum is exact in float32).
    """
    n = len([k for k in tensors if k.startswith("context.") and k.endswith(".weight")])
    h = np.asarray(features, dtype=np.float32)
    big = h.shape[0] >= TORCH_FROM
    if big:
        h = torch.from_numpy(h)
    for i in range(n):
        w = tensors[f"context.{i}.weight"].astype(np.float32)
        b = tensors[f"context.{i}.bias"].astype(np.float32)
        if big:
            acc = torch.addmm(torch.from_numpy(b), h, torch.from_numpy(w).T)
        else:
            acc = h @ w.T
            acc += b
        if i < n - 1:
            h = _floor_shift(acc, FIRST_BITS - ACT_BITS if i == 0 else WEIGHT_BITS).clip(0, ACT_LIMIT)
    shift = WEIGHT_BITS + ACT_BITS
    acc += 1 << (shift - 1)
    out = _floor_shift(acc, shift)  # round to nearest
    out = out.numpy() if big else out
    mean = np.clip(out[:, 0], -LATENT_LIMIT * MEAN_UNITS, LATENT_LIMIT * MEAN_UNITS).astype(np.int64)
    scale = np.clip(out[:, 1], 0, SCALE_BINS - 1).astype(np.int64)
    return mean, scale
