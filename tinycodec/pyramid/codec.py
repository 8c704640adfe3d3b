"""Pyramid family: image <-> .tcz bytes, at three encoder efforts with one bitstream.

    image --pad to 64--> AmortisedEncoder(q) --/ step(q), round--> integer grids   (effort "fast")
                                              \\-- gradient steps on the grids   (effort "refine")
    integer grids --fixed-point context model + table coder, 4 passes per grid--> segments --> container

and back: container --> segments --> integer grids --> dequantise, upsample, synthesis (in row bands) --> image.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .. import zoo
from ..errors import TinyCodecError
from ..image import Planar, to_pil, to_planar
from ..limits import DEFAULT_LIMITS, Deadline, Limits
from ..container_v2 import HeaderV2, InfoV2 as PyramidInfo, check_request, pack, unpack
from ..laplace import LATENT_LIMIT
from ..options import RD_STEPS
from . import bitstream, layout, synthesis as synthesis_numpy
from .weights import ENCODER_MODEL, MODEL, LoadedDecoder, load_decoder, load_encoder

if TYPE_CHECKING:
    import torch

# Encoding runs PyTorch (imported in the functions that do); decoding runs it only where it is loaded
# already, or for an overfit file's own network (synthesise).
FAMILY = 1  # the family byte of its files (container_v2)
DEFAULT_QUALITY = 50
EFFORTS = ("fast", "refine", "overfit")
DEFAULT_REFINE_STEPS = RD_STEPS["refine"]
DEFAULT_OVERFIT_STEPS = RD_STEPS["overfit"]
BAND_ROWS = 128  # synthesis runs on bands of this many output rows (cache-friendly; ~200 bytes per pixel of a band)
ENCODE_WINDOW = 1024  # the encoder network runs on windows of this side (plus margins) on larger images
ENCODE_MARGIN = 128


def _pad(rgb: np.ndarray) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    h, w = rgb.shape[:2]
    ph, pw = layout.padded_size(h, w)
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate") if (ph, pw) != (h, w) else x


def _windows(n: int, size: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(read start, read end, keep start, keep end) along one axis, all multiples of layout.ALIGN."""
    if n <= size + 2 * margin:
        return [(0, n, 0, n)]
    out = []
    for s in range(0, n, size):
        e = min(n, s + size)
        out.append((max(0, s - margin), min(n, e + margin), s, e))
    return out


def predict_latents(x: torch.Tensor, quality: int) -> list[torch.Tensor]:
    """Amortised encoder on a padded image (1, 3, H, W); in overlapping windows when it is large."""
    import torch

    with torch.no_grad():
        encoder = load_encoder(zoo.current_entry(ENCODER_MODEL))
        q = torch.tensor([quality])
        _, _, h, w = x.shape
        rows, cols = _windows(h, ENCODE_WINDOW, ENCODE_MARGIN), _windows(w, ENCODE_WINDOW, ENCODE_MARGIN)
        if len(rows) == 1 and len(cols) == 1:
            return encoder(x, q)
        out = [torch.zeros(1, 1, h >> g.level, w >> g.level) for g in layout.GRIDS]
        for r0, r1, k0, k1 in rows:
            for c0, c1, l0, l1 in cols:
                part = encoder(x[:, :, r0:r1, c0:c1], q)
                for g, y, o in zip(layout.GRIDS, part, out):
                    s = g.level
                    o[:, :, k0 >> s : k1 >> s, l0 >> s : l1 >> s] = y[:, :, (k0 - r0) >> s : (k1 - r0) >> s,
                                                                     (l0 - c0) >> s : (l1 - c0) >> s]
        return out


def quantise(latents: list[torch.Tensor], dec: LoadedDecoder, quality: int) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        steps = dec.network.steps(torch.tensor([quality]))[0]
    return [torch.round(y[0, 0] / steps[g.index]).clamp(-LATENT_LIMIT, LATENT_LIMIT).numpy().astype(bitstream.GRID_DTYPE)
            for g, y in zip(layout.GRIDS, latents)]


def encode_planar(planar: Planar, quality: int = DEFAULT_QUALITY, effort: str = "fast",
                  refine_steps: int = DEFAULT_REFINE_STEPS, extensions: list[tuple[int, bytes]] | None = None) -> bytes:
    quality = check_request("pyramid", EFFORTS, quality, effort, planar.alpha is not None)
    h, w = planar.rgb.shape[:2]
    entry = zoo.current_entry(MODEL)
    dec = load_decoder(entry)
    x = _pad(planar.rgb)
    latents = predict_latents(x, quality)
    header = HeaderV2(FAMILY, w, h, 1 if planar.grey else 3, quality, MODEL, entry.short_id, list(extensions or []))

    def file_of(lat: list[torch.Tensor], weights: bytes = b"") -> tuple[bytes, list[np.ndarray]]:
        grids = quantise(lat, dec, quality)
        segments = bitstream.encode_grids(grids, quality, dec.context, dec.coder)
        header.has_weights = bool(weights)
        return pack(header, [weights, *segments] if weights else segments), grids

    if effort == "fast":
        return file_of(latents)[0]
    from .model import quality_lambda
    from .refine import check_steps, refine_latents
    check_steps(refine_steps)
    lam = quality_lambda(float(quality))

    def cost(candidate: tuple[bytes, list[np.ndarray]], synthesis: torch.nn.Module | None = None) -> float:
        data, grids = candidate
        out = synthesise(grids, dec, quality, h, w, synthesis=synthesis).astype(np.float64)
        return 8 * len(data) / (h * w) + lam * float(np.mean((out - planar.rgb) ** 2)) / 255.0**2

    # Every effort keeps the candidate file with the lowest real rate-distortion cost (bytes and decoded
    # pixels): a few noisy gradient steps can lose to the network's own guess, and on small images an
    # overfit network's kilobytes do not pay for themselves.
    candidates = [(cost(fast := file_of(latents)), fast[0])]
    if effort == "refine":
        refined = file_of(refine_latents(latents, x, dec, quality, refine_steps))
        candidates.append((cost(refined), refined[0]))
    else:
        from .overfit import overfit
        start = refine_latents(latents, x, dec, quality, max(1, refine_steps // 3))
        plain = file_of(start)
        own_latents, weights, own_synthesis = overfit(start, x, dec, quality, refine_steps)
        own = file_of(own_latents, weights)
        candidates += [(cost(plain), plain[0]), (cost(own, own_synthesis), own[0])]
    return min(candidates, key=lambda c: c[0])[1]


def encode(image: Image.Image | np.ndarray, quality: int = DEFAULT_QUALITY, effort: str = "fast",
           refine_steps: int = DEFAULT_REFINE_STEPS) -> bytes:
    """PIL image or HxW[xC] uint8 array -> .tcz bytes of the pyramid family."""
    return encode_planar(to_planar(image), quality, effort, refine_steps)


def _open(data: bytes, partial: bool, limits: Limits) -> tuple:
    unpacked = unpack(bytes(data), partial=partial, limits=limits)
    header = unpacked.header
    from ..container import EXT_CRITICAL
    for ext_type, _ in header.extensions:
        if ext_type & EXT_CRITICAL:
            raise TinyCodecError(f"file needs header extension {ext_type}, unknown to this tinycodec: upgrade")
    if header.model != MODEL:
        raise TinyCodecError(f"file names model '{header.model}', unknown to this tinycodec's pyramid family")
    return unpacked, zoo.entry_for_file(header.model, header.weights_id)


def verify(data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    _open(data, False, limits)


def synthesise(grids: list[np.ndarray], dec: LoadedDecoder, quality: int, height: int, width: int,
               deadline: Deadline | None = None, synthesis: torch.nn.Module | None = None) -> np.ndarray:
    """Integer grids -> (height, width, 3) uint8, in bands of rows (exact: each band reads enough margin).

    ``synthesis``: an overfit file's own network instead of the shared one. The shared one runs in PyTorch
    where PyTorch is loaded, otherwise in numpy (synthesis.py): loading PyTorch would take longer than
    the decode. The two agree to float rounding.
    """
    engine = _TorchEngine(dec, quality, synthesis) if synthesis is not None or "torch" in sys.modules else \
        _NumpyEngine(dec, quality)
    deq = engine.dequantise(grids)
    ph = deq[-1].shape[-2]
    out = np.empty((height, width, 3), dtype=np.uint8)
    for r0 in range(0, height, BAND_ROWS):
        if deadline:
            deadline.check()
        r1 = min(height, r0 + BAND_ROWS)
        e0, e1 = max(0, r0 - 2), min(ph, r1 + 2)  # the two 3x3 layers read 2 rows beyond the band
        parts = []
        for g, y in zip(layout.GRIDS, deq):
            s = g.stride
            c0, c1 = max(0, e0 // s - 1), min(y.shape[-2], -(-e1 // s) + 1)
            part = y[..., c0:c1, :]
            if s > 1:
                # Rows within s/2 of a cut edge of the slice differ from the whole-grid upsampling; the
                # one-row margin of coarse rows keeps them outside [e0, e1).
                part = engine.upsample(part, s)
            parts.append(part[..., e0 - c0 * s : e1 - c0 * s, :])
        out[r0:r1] = engine.rgb(parts[::-1], r0 - e0, r1 - e0, width)  # level order, finest first (upsample_grids)
    return out


class _NumpyEngine:
    """:func:`synthesise`'s steps in numpy: grids as (h, w) arrays."""

    def __init__(self, dec: LoadedDecoder, quality: int) -> None:
        self.floats, self.steps = dec.floats, synthesis_numpy.steps(dec.floats, quality)

    def dequantise(self, grids: list[np.ndarray]) -> list[np.ndarray]:
        return [y.astype(np.float32) * self.steps[g.index] for g, y in zip(layout.GRIDS, grids)]

    upsample = staticmethod(synthesis_numpy.upsample)

    def rgb(self, parts: list[np.ndarray], a: int, b: int, width: int) -> np.ndarray:
        rgb = synthesis_numpy.synthesis(self.floats, np.stack(parts))[:, a:b, :width]
        return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)


class _TorchEngine:
    """:func:`synthesise`'s steps in PyTorch: grids as (1, 1, h, w) tensors."""

    def __init__(self, dec: LoadedDecoder, quality: int, synthesis: torch.nn.Module | None) -> None:
        import torch

        self.torch, self.synthesis = torch, synthesis or dec.network.synthesis
        with torch.no_grad():
            self.steps = dec.network.steps(torch.tensor([quality]))[0]

    def dequantise(self, grids: list[np.ndarray]) -> list[torch.Tensor]:
        return [self.torch.from_numpy(y).float()[None, None] * self.steps[g.index] for g, y in zip(layout.GRIDS, grids)]

    def upsample(self, part: torch.Tensor, s: int) -> torch.Tensor:
        return self.torch.nn.functional.interpolate(part, scale_factor=s, mode="bilinear", align_corners=False)

    def rgb(self, parts: list[torch.Tensor], a: int, b: int, width: int) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            rgb = self.synthesis(torch.cat(parts, dim=1))[:, :, a:b, :width]
        return (rgb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def decode_with_info(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> tuple[Image.Image, PyramidInfo]:
    unpacked, entry = _open(data, partial, limits)
    header = unpacked.header
    dec = load_decoder(entry)
    deadline = limits.deadline(header.width, header.height)
    shapes = layout.grid_shapes(header.height, header.width)
    try:
        grids = bitstream.decode_grids(unpacked.segments, shapes, header.quality, dec.context, dec.coder,
                                       deadline.check)
        decoded = len(grids)
        grids += [np.zeros(s, dtype=bitstream.GRID_DTYPE) for s in shapes[decoded:]]
        own = None
        if unpacked.weights is not None:
            from .overfit import decode_weights
            own = decode_weights(unpacked.weights, dec.network.synthesis)
        rgb = synthesise(grids, dec, header.quality, header.height, header.width, deadline, own)
    except MemoryError:
        raise TinyCodecError(f"not enough memory to decode a {header.width}x{header.height} image here") from None
    image = to_pil(rgb, None, header.color_channels == 1)
    info = PyramidInfo(header.width, header.height, header.quality, header.model, image.mode,
                       len(layout.GRIDS), decoded)
    return image, info


def decode(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    return decode_with_info(data, partial=partial, limits=limits)[0]


def reconstruct(grids: list[np.ndarray], quality: int, height: int, width: int) -> np.ndarray:
    """Decoder output for integer grids, without entropy coding (benchmarks and tests)."""
    return synthesise(grids, load_decoder(zoo.current_entry(MODEL)), quality, height, width)

