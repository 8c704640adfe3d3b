"""Shallow family: image <-> .tcz bytes, at two encoder efforts with one bitstream.

    image --pad to 64--> analysis --/ step(q), round--> y integers;  hyper-analysis --round--> z integers
                                   \\-- gradient steps on y and z (effort "refine")
    z --per-channel Laplace--> segment 0;  y --integer hyper-synthesis(z) Laplace--> segment 1  --> container

and back: container --> z --> hyperprior --> y --> x step(q) --> synthesis --> image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import zoo
from ..container import EXT_CRITICAL
from ..container_v2 import HeaderV2, InfoV2, check_quality, pack, unpack
from ..errors import TinyCodecError
from ..image import Planar, to_pil, to_planar
from ..limits import DEFAULT_LIMITS, Limits
from ..pyramid.model import LATENT_LIMIT, LOG_SCALE_STEP, SCALE_MIN, quality_lambda
from ..tiling import spans
from . import bitstream, layout
from .model import LATENT_CHANNELS, ShallowEncoder, rd_from_latents
from .weights import ENCODER_MODEL, MODEL, LoadedDecoder, load_decoder, load_encoder

FAMILY = 2  # the family byte of its files (container_v2)
DEFAULT_QUALITY = 50
EFFORTS = ("fast", "refine")
DEFAULT_REFINE_STEPS = 100
MAX_REFINE_STEPS = 10_000
REFINE_LEARNING_RATE = 0.05  # in units of one quantisation step
BAND_LATENT_ROWS = 16  # synthesis runs on bands of 16 latent rows (256 output rows)
ANALYSIS_WINDOW = 1024  # the analysis runs on windows of this side on larger images
ANALYSIS_HALO = 64  # its receptive field reaches 46 pixels beyond a latent's 16; a multiple of 16 keeps y aligned


def _pad(rgb: np.ndarray) -> torch.Tensor:
    h, w = rgb.shape[:2]
    ph, pw = layout.padded_size(h, w)
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate") if (ph, pw) != (h, w) else x


@torch.no_grad()
def analyse(encoder: ShallowEncoder, x: torch.Tensor) -> torch.Tensor:
    """y of a padded image (1, 3, H, W), window by window on large images (the same values up to float
    rounding: each window reads a halo wider than the receptive field), so the 128-channel activations
    never exist for the whole image."""
    _, _, h, w = x.shape
    if max(h, w) <= ANALYSIS_WINDOW + 2 * ANALYSIS_HALO:
        return encoder.analysis(x)
    y = x.new_zeros(1, LATENT_CHANNELS, h // 16, w // 16)
    for r in spans(h, ANALYSIS_WINDOW, ANALYSIS_HALO):
        for c in spans(w, ANALYSIS_WINDOW, ANALYSIS_HALO):
            part = encoder.analysis(x[:, :, r.outer_start : r.outer_stop, c.outer_start : c.outer_stop])
            y[:, :, r.start // 16 : r.stop // 16, c.start // 16 : c.stop // 16] = part[
                :, :, (r.start - r.outer_start) // 16 : (r.stop - r.outer_start) // 16,
                (c.start - c.outer_start) // 16 : (c.stop - c.outer_start) // 16]
    return y


def _z_log_scale(dec: LoadedDecoder, quality: int) -> torch.Tensor:
    bins = torch.from_numpy(dec.tensors["quality.z_scale_bin"][quality].astype(np.float32))
    return (math.log(SCALE_MIN) + bins * LOG_SCALE_STEP)[None]


def _integers(y: torch.Tensor, z: torch.Tensor, dec: LoadedDecoder, quality: int) -> tuple[np.ndarray, np.ndarray]:
    step = torch.exp(dec.log_step(quality))[0][:, None, None]
    k = torch.round(y[0] / step).clamp(-LATENT_LIMIT, LATENT_LIMIT)
    kz = torch.round(z[0]).clamp(-LATENT_LIMIT, LATENT_LIMIT)
    return kz.numpy().astype(bitstream.LATENT_DTYPE), k.numpy().astype(bitstream.LATENT_DTYPE)


def refine_latents(y: torch.Tensor, z: torch.Tensor, x: torch.Tensor, dec: LoadedDecoder, quality: int,
                   steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient steps on y and z (the decoder fixed) under rate + lambda * MSE; cosine learning rate, noisy
    rate for the first 80% of the steps, rounded after; the noise is seeded (the same image, the same file)."""
    log_step, z_log_scale = dec.log_step(quality), _z_log_scale(dec, quality)
    step = torch.exp(log_step)[:, :, None, None]
    k = (y / step).detach().clone().requires_grad_(True)  # in quantisation steps, so one learning rate fits all
    zz = z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([k, zz], lr=REFINE_LEARNING_RATE)
    lam = quality_lambda(float(quality))
    generator = torch.Generator().manual_seed(0)
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = REFINE_LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * i / steps))
        bpp, mse, _ = rd_from_latents(dec.synthesis, dec.hyper, log_step, z_log_scale, k * step, zz, x,
                                      noise=i < int(0.8 * steps), generator=generator)
        loss = bpp.sum() + lam * mse.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (k * step).detach(), zz.detach()


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_REFINE_STEPS:
        raise TinyCodecError(f"refinement steps must be an integer from 1 to {MAX_REFINE_STEPS}, not {steps!r}")
    return steps


@torch.no_grad()
def synthesise(k: np.ndarray, dec: LoadedDecoder, quality: int, height: int, width: int) -> np.ndarray:
    """Integer y (M, h, w) -> (height, width, 3) uint8, in bands of latent rows (each with a one-row margin:
    a 8x8 stride-4 transposed conv twice reaches one latent row beyond the band, exactly as on the whole)."""
    y = torch.from_numpy(k.astype(np.float32))[None] * torch.exp(dec.log_step(quality))[0][None, :, None, None]
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = y.shape[2]
    for r0 in range(0, rows, BAND_LATENT_ROWS):
        r1 = min(rows, r0 + BAND_LATENT_ROWS)
        if 16 * r0 >= height:
            break
        e0, e1 = max(0, r0 - 1), min(rows, r1 + 1)
        rgb = dec.synthesis(y[:, :, e0:e1])
        band = rgb[0, :, 16 * (r0 - e0) : 16 * (r1 - e0), :width]
        o1 = min(height, 16 * r1)
        out[16 * r0 : o1] = (band[:, : o1 - 16 * r0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return out


def encode_planar(planar: Planar, quality: int = DEFAULT_QUALITY, effort: str = "fast",
                  refine_steps: int = DEFAULT_REFINE_STEPS, extensions: list[tuple[int, bytes]] | None = None) -> bytes:
    quality = check_quality(quality)
    if effort not in EFFORTS:
        raise TinyCodecError(f"unknown effort '{effort}' for the shallow family (choose from {', '.join(EFFORTS)})")
    if planar.alpha is not None:
        raise TinyCodecError("the shallow family codes no alpha channel: use TinyCompress (-s/--scale) "
                             "for images with transparency, or drop the alpha channel")
    h, w = planar.rgb.shape[:2]
    entry = zoo.current_entry(MODEL)
    dec = load_decoder(entry)
    encoder = load_encoder(zoo.current_entry(ENCODER_MODEL))
    x = _pad(planar.rgb)
    y = analyse(encoder, x)
    with torch.no_grad():
        z = encoder.hyper_analysis(y)
    header = HeaderV2(FAMILY, w, h, 1 if planar.grey else 3, quality, MODEL, entry.short_id, list(extensions or []))

    def file_of(y: torch.Tensor, z: torch.Tensor) -> tuple[bytes, np.ndarray]:
        kz, k = _integers(y, z, dec, quality)
        return pack(header, bitstream.encode_latents(kz, k, quality, dec.tensors, dec.coder)), k

    fast = file_of(y, z)
    if effort == "fast":
        return fast[0]
    check_steps(refine_steps)
    lam = quality_lambda(float(quality))

    def cost(candidate: tuple[bytes, np.ndarray]) -> float:
        data, k = candidate
        out = synthesise(k, dec, quality, h, w).astype(np.float64)
        return 8 * len(data) / (h * w) + lam * float(np.mean((out - planar.rgb) ** 2)) / 255.0**2

    # Keep whichever file has the lower real rate-distortion cost: noisy steps can lose to the network's guess.
    refined = file_of(*refine_latents(y, z, x, dec, quality, refine_steps))
    return min((fast, refined), key=cost)[0]


def encode(image: Image.Image | np.ndarray, quality: int = DEFAULT_QUALITY, effort: str = "fast",
           refine_steps: int = DEFAULT_REFINE_STEPS) -> bytes:
    """PIL image or HxW[xC] uint8 array -> .tcz bytes of the shallow family."""
    return encode_planar(to_planar(image), quality, effort, refine_steps)


def _open(data: bytes, partial: bool, limits: Limits):
    unpacked = unpack(bytes(data), partial=partial, limits=limits)
    header = unpacked.header
    for ext_type, _ in header.extensions:
        if ext_type & EXT_CRITICAL:
            raise TinyCodecError(f"file needs header extension {ext_type}, unknown to this tinycodec: upgrade")
    if header.model != MODEL:
        raise TinyCodecError(f"file names model '{header.model}', unknown to this tinycodec's shallow family")
    if header.has_weights:
        raise TinyCodecError("corrupt .tcz header: the shallow family carries no decoder weights in its files")
    return unpacked, zoo.entry_for_file(header.model, header.weights_id)


def verify(data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    _open(data, False, limits)


def decode_with_info(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> tuple[Image.Image, InfoV2]:
    unpacked, entry = _open(data, partial, limits)
    header = unpacked.header
    if unpacked.segments[0] is None:
        raise TinyCodecError("truncated .tcz file: its hyper-latents did not arrive whole")
    dec = load_decoder(entry)
    deadline = limits.deadline(header.width, header.height)
    try:
        kz, k, whole = bitstream.decode_latents(unpacked.segments, layout.hyper_shape(header.height, header.width),
                                                layout.latent_shape(header.height, header.width), header.quality,
                                                dec.tensors, dec.coder)
        deadline.check()
        rgb = synthesise(k, dec, header.quality, header.height, header.width)
    except MemoryError:
        raise TinyCodecError(f"not enough memory to decode a {header.width}x{header.height} image here") from None
    image = to_pil(rgb, None, header.color_channels == 1)
    return image, InfoV2(header.width, header.height, header.quality, header.model, image.mode, 2, 1 + whole)


def decode(data: bytes, *, partial: bool = False, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    return decode_with_info(data, partial=partial, limits=limits)[0]
