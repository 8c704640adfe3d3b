"""Running the networks: TinyCompress and the enhancement filters (PyTorch on the CPU).

Networks are built once per registered weights version and cached. Other
backends (ONNX Runtime, TensorRT) will plug in here as runners of the same
networks; the rest of the codec only sees numpy arrays.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .filters import FilterSpec, reparameterise, run_filter
from .models import SCALE_DEPTHS, TinyCompress
from .zoo import WeightsEntry, load_tensors


@lru_cache(maxsize=8)
def _model(entry: WeightsEntry, scale: int) -> TinyCompress:
    model = TinyCompress(scale)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in load_tensors(entry).items()})
    model.eval()
    # channels_last runs these few-channel convolutions about 3x faster on CPU.
    return model.to(memory_format=torch.channels_last)


def scale_of_depth(depth: int) -> int:
    return next(s for s, d in SCALE_DEPTHS.items() if d == depth)


@torch.inference_mode()
def run_encoder(entry: WeightsEntry, scale: int, rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8, H and W multiples of 2**k -> (3, H/2**k, W/2**k) float32 latent."""
    if not rgb.flags.writeable:  # torch warns on read-only arrays (e.g. from np.asarray(PIL image))
        rgb = rgb.copy()
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255.0)
    y = _model(entry, scale).encoder(x.contiguous(memory_format=torch.channels_last))
    return np.ascontiguousarray(y[0].numpy(), dtype=np.float32)


@torch.inference_mode()
def run_decoder(entry: WeightsEntry, scale: int, latent: np.ndarray) -> np.ndarray:
    """(3, h, w) float32 latent -> (h*2**k, w*2**k, 3) uint8 image."""
    y = torch.from_numpy(latent)[None].contiguous(memory_format=torch.channels_last)
    x = _model(entry, scale).decoder(y)[0]
    return x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


@lru_cache(maxsize=8)
def _filter_model(entry: WeightsEntry, spec: FilterSpec) -> torch.nn.Module:
    model = spec.build()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in load_tensors(entry).items()})
    reparameterise(model).eval()  # inference runs the folded single-conv blocks
    return model if spec.per_channel else model.to(memory_format=torch.channels_last)


def filter_halo(spec: FilterSpec) -> int:
    """Input pixels of context a tile needs on each side for a seam-free result."""
    # TinyPSSR sees 9x9 input pixels (two 5x5 convs): 4 suffice. The UNets'
    # receptive field is about 50 input pixels plus the 31-pixel local-mean
    # removal; 48 (a multiple of their 4-pixel pooling grid) leaves differences
    # of a grey level or two.
    return 4 if spec.per_channel else 48


def run_filter_rgb(entry: WeightsEntry, spec: FilterSpec, rgb: np.ndarray, tile: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 -> (H*r, W*r, 3) uint8 through a registered filter."""
    return run_filter_tiled(_filter_model(entry, spec), spec, rgb, tile)


@torch.inference_mode()
def run_filter_tiled(model: torch.nn.Module, spec: FilterSpec, rgb: np.ndarray, tile: int = 512) -> np.ndarray:
    """(H, W, 3) uint8 -> (H*r, W*r, 3) uint8, in overlapping tiles of ``tile`` input pixels (bounded memory)."""
    r, halo, h, w = spec.upscale, filter_halo(spec), rgb.shape[0], rgb.shape[1]
    tile = max(spec.multiple, tile - tile % spec.multiple)
    out = np.empty((h * r, w * r, 3), dtype=np.uint8)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            # Halo starts stay on the pooling grid so tiles compute what the whole image would.
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            yb, xb = min(h, y1 + halo), min(w, x1 + halo)
            x = torch.from_numpy(np.array(rgb[ya:yb, xa:xb])).permute(2, 0, 1)[None].float().div_(255.0)
            if not spec.per_channel:
                x = x.contiguous(memory_format=torch.channels_last)
            y = run_filter(model, spec, x)[0]
            y = y[:, (y0 - ya) * r : (y1 - ya) * r, (x0 - xa) * r : (x1 - xa) * r]
            out[y0 * r : y1 * r, x0 * r : x1 * r] = (
                y.mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
            )
    return out
