"""The shallow family's decoder networks in numpy: what a decoding device runs, without PyTorch.

The same computations as ``model.Synthesis`` (float32; decoders may differ from it in the last bit of a
pixel, never in the latents) and the transposed convolutions of the integer hyper-synthesis (float64, exact).
"""

from __future__ import annotations

import numpy as np

BAND_LATENT_ROWS = 16  # synthesis runs on bands of 16 latent rows (256 or 128 output rows)


def tconv_matrix(weight: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A transposed convolution's weight (Cin, Cout, 2s, 2s) as the matrix :func:`tconv` multiplies by: rows
    ordered (kernel half u, v; phase r, q; output channel), so that each of the four overlapping blocks is
    contiguous."""
    cin, cout, k, _ = weight.shape
    s = k // 2
    w = weight.astype(dtype).reshape(cin, cout, 2, s, 2, s).transpose(2, 4, 3, 5, 1, 0)
    return np.ascontiguousarray(w.reshape(4 * s * s * cout, cin))


def tconv(x: np.ndarray, matrix: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """Transposed convolution with kernel 2*stride and padding stride/2 (PyTorch's ``conv_transpose2d``) of
    x (Cin, H, W), the weight as :func:`tconv_matrix`: one matrix product, then the 2x2 overlapping blocks added."""
    cin, h, w = x.shape
    cout, s = bias.shape[0], stride
    cols = (matrix @ x.reshape(cin, h * w)).reshape(2, 2, s, s, cout, h, w)
    out = np.zeros((s, s, cout, h + 1, w + 1), dtype=cols.dtype)
    for u in (0, 1):
        for v in (0, 1):
            out[:, :, :, u : u + h, v : v + w] += cols[u, v]
    p = s // 2
    out = out.transpose(2, 3, 0, 4, 1).reshape(cout, (h + 1) * s, (w + 1) * s)[:, p : p + h * s, p : p + w * s]
    return out + bias.astype(out.dtype)[:, None, None]


def inverse_gdn(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    norm = np.abs(gamma) @ (x * x).reshape(c, h * w) + (np.abs(beta) + np.float32(1e-6))[:, None]
    return x * np.sqrt(norm).reshape(c, h, w)


def prepare(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The synthesis tensors of a weights file in the form :func:`synthesise` runs (float32, tconv matrices)."""
    t = {name: np.asarray(v, dtype=np.float32) for name, v in tensors.items() if name.startswith("synthesis.")}
    t["last_stride"] = np.array(t["synthesis.up2.weight"].shape[2] // 2)
    t["synthesis.up1.weight"] = tconv_matrix(t["synthesis.up1.weight"])
    t["synthesis.up2.weight"] = tconv_matrix(t["synthesis.up2.weight"])
    t["quality.step"] = np.asarray(tensors["quality.step"], dtype=np.float32)
    return t


def synthesise(k: np.ndarray, t: dict[str, np.ndarray], quality: int, height: int, width: int) -> np.ndarray:
    """Integer y (M, h, w) -> (height, width, 3) uint8, in bands of latent rows, each read with a margin of one
    latent row (two transposed convolutions with kernels twice their strides reach no further), so bands join
    exactly. ``t``: :func:`prepare` of the weights."""
    last = int(t["last_stride"])
    s = 4 * last  # output pixels per latent row
    y = k.astype(np.float32) * t["quality.step"][quality][:, None, None]
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = y.shape[1]
    for r0 in range(0, rows, BAND_LATENT_ROWS):
        if s * r0 >= height:
            break
        r1 = min(rows, r0 + BAND_LATENT_ROWS)
        e0, e1 = max(0, r0 - 1), min(rows, r1 + 1)
        a = tconv(y[:, e0:e1], t["synthesis.up1.weight"], t["synthesis.up1.bias"], 4)
        a = inverse_gdn(a, t["synthesis.igdn.gamma"], t["synthesis.igdn.beta"])
        rgb = tconv(a, t["synthesis.up2.weight"], t["synthesis.up2.bias"], last)
        o1 = min(height, s * r1)
        band = rgb[:, s * (r0 - e0) : s * (r0 - e0) + o1 - s * r0, :width] + np.float32(0.5)
        out[s * r0 : o1] = (np.clip(band, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    return out
