"""Running the networks: TinyCompress and the enhancement filters, on any inference backend.

This is the one place the codec and the filters call. Networks run through
:mod:`tinycodec.backends` runners (PyTorch, ONNX Runtime fp32/int8, TensorRT),
chosen by ``backend``/``device``/``precision``; the rest of the codec only sees
numpy arrays. Pre- and post-processing (uint8 <-> float, padding, tiling,
rounding) is done here, identically for every backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .backends import Runner, TorchRunner, get_runner
from .networks import codec_network, filter_network
from .options import SCALE_DEPTHS, FilterSpec
from .zoo import WeightsEntry

if TYPE_CHECKING:
    import torch


def scale_of_depth(depth: int) -> int:
    return next(s for s, d in SCALE_DEPTHS.items() if d == depth)


def run_encoder(entry: WeightsEntry, scale: int, rgb: np.ndarray, *, backend: str = "auto", device: str = "cpu",
                precision: str = "fp32") -> np.ndarray:
    """(H, W, 3) uint8, H and W multiples of 2**k -> (3, H/2**k, W/2**k) float32 latent."""
    runner = get_runner(codec_network(entry, scale, "encoder"), backend, device, precision)
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(runner.run(x)[0], dtype=np.float32)


def run_decoder(entry: WeightsEntry, scale: int, latent: np.ndarray, *, backend: str = "auto", device: str = "cpu",
                precision: str = "fp32") -> np.ndarray:
    """(3, h, w) float32 latent -> (h*2**k, w*2**k, 3) uint8 image."""
    runner = get_runner(codec_network(entry, scale, "decoder"), backend, device, precision)
    y = runner.run(np.ascontiguousarray(latent, dtype=np.float32)[None])[0]
    return to_uint8(y.transpose(1, 2, 0))


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8, rounding half to even (as torch.round)."""
    return np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)


def filter_halo(spec: FilterSpec) -> int:
    """Input pixels of context a tile needs on each side for a seam-free result."""
    # TinyPSSR sees 9x9 input pixels (two 5x5 convs): 4 suffice. The UNets'
    # bodies see about 44 pixels of their own resolution on each side (UNet's
    # is half the input's: 88 input pixels), plus the local-mean removal's 15
    # output pixels; 64 (a multiple of both pooling grids, 8 and 4 input
    # pixels) leaves differences of a grey level or two.
    return 4 if spec.per_channel else 64


def run_filter_rgb(entry: WeightsEntry, spec: FilterSpec, rgb: np.ndarray, tile: int = 512, *, backend: str = "auto",
                   device: str = "cpu", precision: str = "fp32") -> np.ndarray:
    """(H, W, 3) uint8 -> (H*r, W*r, 3) uint8 through a registered filter."""
    return run_filter_tiled(get_runner(filter_network(entry), backend, device, precision), spec, rgb, tile)


def apply_filter(runner: Runner, spec: FilterSpec, x: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) float32 in [0, 1] -> (N, 3, H*r, W*r), clamped; pads to the network's multiple, crops back.

    The numpy twin of :func:`tinycodec.filters.run_filter`, for any backend.
    """
    n, c, h, w = x.shape
    m, r = spec.multiple, spec.upscale
    ph, pw = -h % m, -w % m
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
    if spec.per_channel:
        y = runner.run(x.reshape(n * c, 1, *x.shape[2:])).reshape(n, c, x.shape[2] * r, -1)
    else:
        y = runner.run(x)
    return np.clip(y[:, :, : h * r, : w * r], 0.0, 1.0)


def run_filter_tiled(model: Runner | torch.nn.Module, spec: FilterSpec, rgb: np.ndarray, tile: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 -> (H*r, W*r, 3) uint8, in overlapping tiles of ``tile`` input pixels (bounded memory).

    model: a backend runner, or a PyTorch module (run on the CPU in fp32).
    """
    if not isinstance(model, Runner):  # a PyTorch module
        model = TorchRunner.from_module(model, spec.name, channels_last=not spec.per_channel)
    r, halo, h, w = spec.upscale, filter_halo(spec), rgb.shape[0], rgb.shape[1]
    tile = max(spec.multiple, tile - tile % spec.multiple)
    out = np.empty((h * r, w * r, 3), dtype=np.uint8)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            # Halo starts stay on the pooling grid so tiles compute what the whole image would.
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(h, y1 + halo), min(w, x1 + halo)
            x = rgb[ya:yb, xa:xb].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
            y = apply_filter(model, spec, x)[0]
            y = y[:, (y0 - ya) * r : (y1 - ya) * r, (x0 - xa) * r : (x1 - xa) * r]
            out[y0 * r : y1 * r, x0 * r : x1 * r] = to_uint8(y.transpose(1, 2, 0))
    return out
