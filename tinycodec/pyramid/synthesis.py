"""The pyramid decoder's float part in numpy: dequantisation steps, bilinear upsampling and synthesis.

The same arithmetic as :class:`model.QuantiserSteps`, ``F.interpolate(mode="bilinear",
align_corners=False)`` and :class:`model.Synthesis`, without PyTorch: a Kodak-size decode takes less time
than importing PyTorch. float32 throughout, so pixels differ from PyTorch's by float rounding (at most a
grey level; tests/test_pyramid.py compares them); the integer grids, which the context model decides,
are the same whatever runs this.
"""

from __future__ import annotations

import numpy as np

from ..errors import TinyCodecError
from ..numpy_backend import conv2d
from . import layout


def steps(tensors: dict[str, np.ndarray], quality: int) -> np.ndarray:
    """Quantisation step of each grid at this quality (QuantiserSteps)."""
    t = np.float32(quality) / np.float32(layout.MAX_QUALITY)
    return np.exp(tensors["steps.log_step_at_0"] + tensors["steps.log_step_slope"] * t).astype(np.float32)


def _taps(n: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of the second one for each of n * s outputs (PyTorch's half-pixel rule,
    sources before the first sample clamped to it)."""
    src = np.maximum((np.arange(n * s, dtype=np.float32) + np.float32(0.5)) / np.float32(s) - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), n - 1)
    return i0, np.minimum(i0 + 1, n - 1), (src - i0).astype(np.float32)


def upsample(x: np.ndarray, s: int) -> np.ndarray:
    """(h, w) -> (h s, w s), bilinear, as ``F.interpolate(scale_factor=s, mode="bilinear", align_corners=False)``."""
    i0, i1, a = _taps(x.shape[0], s)
    x = x[i0] * (1 - a)[:, None] + x[i1] * a[:, None]
    j0, j1, b = _taps(x.shape[1], s)
    return x[:, j0] * (1 - b) + x[:, j1] * b


def synthesis(tensors: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """(LATENT_CHANNELS, H, W) upsampled grids -> (3, H, W) RGB in about [0, 1] (Synthesis.forward)."""
    _, h, w = features.shape
    y = features.reshape(features.shape[0], -1)
    names = sorted({k.rsplit(".", 2)[1] for k in tensors if k.startswith("synthesis.pointwise.")}, key=int)
    try:
        for i, n in enumerate(names):
            weight = tensors[f"synthesis.pointwise.{n}.weight"]
            y = weight.reshape(weight.shape[0], -1) @ y + tensors[f"synthesis.pointwise.{n}.bias"][:, None]
            if i < len(names) - 1:
                np.maximum(y, 0, out=y)
        rgb = y.reshape(-1, h, w)
        rgb = rgb + np.maximum(conv2d(rgb, tensors["synthesis.residual.0.weight"], tensors["synthesis.residual.0.bias"]), 0)
        rgb = rgb + conv2d(rgb, tensors["synthesis.residual.1.weight"], tensors["synthesis.residual.1.bias"])
    except (KeyError, ValueError) as exc:  # weights of another architecture (checked in PyTorch when it builds them)
        raise TinyCodecError(f"the pyramid decoder's weights do not fit this tinycodec ({exc}); reinstall tinycodec") from None
    rgb += np.float32(0.5)
    return rgb
