"""The codec's networks in numpy: TinyCompress's encoding and decoding blocks without PyTorch.

Importing PyTorch takes longer on a small CPU than a whole Kodak-size decode without it, and these blocks
are a few convolutions of 3 to 15 channels: numpy runs each as one matrix product over edge-padded
shifted copies of the input (im2col), in row bands that bound the copies' memory. Same weights and layer
order as :mod:`tinycodec.models` (tests/test_backends.py compares them with PyTorch); float32
throughout, so results differ from PyTorch's by float rounding, as ONNX Runtime's do.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .backends import BackendError
from .networks import Network
from .options import SCALE_DEPTHS
from .zoo import load_tensors

# The layers of models.EncoderBlock and models.DecoderBlock, by their index in the block's ``body``.
ENCODER_LAYERS = ("conv", "prelu", "conv", "prelu", "unshuffle", "conv", "prelu", "conv", "prelu")
DECODER_LAYERS = ("conv", "prelu", "shuffle", "conv", "prelu", "conv", "sigmoid")
BAND_BYTES = 16 << 20  # the shifted copies of the input (im2col) of one band of rows, at most


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (O, H, W): a 'same' convolution whose padding replicates the edges (models.EdgePaddedConv2d)."""
    c, h, w = x.shape
    o, _, k, _ = weight.shape
    matrix = weight.reshape(o, c * k * k)
    if k == 1:
        return (matrix @ x.reshape(c, h * w) + bias[:, None]).reshape(o, h, w)
    p = k // 2
    # One spare row below: the taps of the discarded right-hand columns of the last row read past the
    # padded image by up to k - 2 elements, and must stay inside the array.
    padded = np.pad(x, ((0, 0), (p, p + 1), (p, p)), mode="edge")
    wp, item = w + 2 * p, padded.itemsize
    flat = padded.reshape(-1)
    out = np.empty((o, h, wp), dtype=np.float32)  # on the padded width; columns w.. are discarded
    band = max(1, BAND_BYTES // (item * c * k * k * wp))
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        n = (r1 - r0) * wp
        # Output element i of the band (row-major on the padded width) reads tap (dy, dx) of channel c at
        # flat[c, r0 * wp + i + dy * wp + dx]: a strided view of every tap, copied once (im2col).
        taps = as_strided(flat[r0 * wp :], shape=(c, k, k, n), strides=(padded.strides[0], wp * item, item, item))
        band_out = matrix @ taps.reshape(c * k * k, n)
        band_out += bias[:, None]
        out[:, r0:r1] = band_out.reshape(o, r1 - r0, wp)
    return out[:, :, :w]


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    negative = np.minimum(x, 0)
    negative *= slope[:, None, None]
    np.maximum(x, 0, out=x)
    x += negative
    return x


def pixel_shuffle(x: np.ndarray, r: int = 2) -> np.ndarray:
    """(C r^2, H, W) -> (C, H r, W r): channel c r^2 + i r + j goes to sub-pixel (i, j), as torch's."""
    c, h, w = x.shape
    return x.reshape(c // (r * r), r, r, h, w).transpose(0, 3, 1, 4, 2).reshape(c // (r * r), h * r, w * r)


def pixel_unshuffle(x: np.ndarray, r: int = 2) -> np.ndarray:
    """The inverse of :func:`pixel_shuffle`."""
    c, h, w = x.shape
    return x.reshape(c, h // r, r, w // r, r).transpose(0, 2, 4, 1, 3).reshape(c * r * r, h // r, w // r)


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0, and 1 / inf is the right 0
        np.negative(x, out=x)
        np.exp(x, out=x)
    x += 1
    return np.reciprocal(x, out=x)


class NumpyRunner:
    """TinyCompress's encoder or decoder (every iteration of its block) in numpy, fp32 on the CPU."""

    backend = "numpy"

    def __init__(self, net: Network, device: str = "cpu", precision: str = "fp32") -> None:
        if not net.is_codec:
            raise BackendError(f"backend 'numpy' runs the codec's networks only, not {net.name}: use torch or onnx")
        self.network, self.device, self.precision = net.name, device, precision
        tensors = load_tensors(net.entry)
        part = net.part
        self.layers = ENCODER_LAYERS if part == "encoder" else DECODER_LAYERS
        shared = f"{part}.block.body.0.weight" in tensors
        prefixes = [f"{part}.block.body." if shared else f"{part}.blocks.{i}.body."
                    for i in range(SCALE_DEPTHS[net.scale])]
        self.blocks = [{key[len(prefix):]: np.ascontiguousarray(value, dtype=np.float32)
                        for key, value in tensors.items() if key.startswith(prefix)} for prefix in prefixes]

    def _block(self, x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        for i, layer in enumerate(self.layers):
            if layer == "conv":
                x = conv2d(x, params[f"{i}.weight"], params[f"{i}.bias"])
            elif layer == "prelu":
                x = prelu(x, params[f"{i}.weight"])
            elif layer == "shuffle":
                x = pixel_shuffle(x)
            elif layer == "unshuffle":
                x = pixel_unshuffle(x)
            else:
                x = sigmoid(x)
        return x

    def run(self, x: np.ndarray) -> np.ndarray:
        out = []
        for item in np.asarray(x, dtype=np.float32):
            for params in self.blocks:
                item = self._block(item, params)
            out.append(item)
        return np.stack(out)
