"""Running the TinyCompress networks (PyTorch on the CPU).

Networks are built once per registered weights version and cached. Other
backends (ONNX Runtime, TensorRT) will plug in here as runners of the same
networks; the rest of the codec only sees numpy arrays.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

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
