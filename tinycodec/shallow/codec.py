"""Shallow family: image -> .tcz bytes, at two encoder efforts with one bitstream (decoding: decoder.py).

    image --pad to 64--> analysis --/ step(q), round--> y integers;  hyper-analysis --round--> z integers
                                   \\-- gradient steps on y and z (effort "refine")
    z --per-channel Laplace--> segment 0;  y --integer hyper-synthesis(z) Laplace--> segment 1  --> container
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import zoo
from ..container_v2 import HeaderV2, check_request, pack
from ..errors import TinyCodecError
from ..image import Planar, to_planar
from ..laplace import LATENT_LIMIT, LOG_SCALE_STEP, SCALE_MIN
from ..pyramid.model import quality_lambda
from ..tiling import spans
from . import bitstream, fixedpoint, layout
from .decoder import FAMILY
from .model import HyperSynthesis, ShallowEncoder, Synthesis, rd_from_latents
from .synthesis import synthesise
from .weights import MODEL, LoadedDecoder, encoder_model, load_decoder

from . import DEFAULT_QUALITY, DEFAULT_REFINE_STEPS, EFFORTS  # noqa: E402,I001 (the package's constants)

MAX_REFINE_STEPS = 10_000
REFINE_LEARNING_RATE = 0.05  # in units of one quantisation step
ANALYSIS_WINDOW = 1024  # the analysis runs on windows of this side on larger images
ANALYSIS_HALO = 64  # its receptive field reaches 46 pixels beyond a latent's 16; a multiple of 16 keeps y aligned


def _pad(rgb: np.ndarray, arch: layout.Architecture) -> torch.Tensor:
    h, w = rgb.shape[:2]
    ph, pw = layout.padded_size(h, w, arch)
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    return F.pad(x, (0, pw - w, 0, ph - h), mode="replicate") if (ph, pw) != (h, w) else x


@torch.no_grad()
def analyse(encoder: ShallowEncoder, x: torch.Tensor, arch: layout.Architecture) -> torch.Tensor:
    """y of a padded image (1, 3, H, W), window by window on large images (the same values up to float
    rounding: each window reads a halo wider than the receptive field), so the 128-channel activations
    never exist for the whole image."""
    _, _, h, w = x.shape
    if max(h, w) <= ANALYSIS_WINDOW + 2 * ANALYSIS_HALO:
        return encoder.analysis(x)
    s = arch.latent_stride
    y = x.new_zeros(1, arch.latent_channels, h // s, w // s)
    for r in spans(h, ANALYSIS_WINDOW, ANALYSIS_HALO):
        for c in spans(w, ANALYSIS_WINDOW, ANALYSIS_HALO):
            part = encoder.analysis(x[:, :, r.outer_start : r.outer_stop, c.outer_start : c.outer_stop])
            y[:, :, r.start // s : r.stop // s, c.start // s : c.stop // s] = part[
                :, :, (r.start - r.outer_start) // s : (r.stop - r.outer_start) // s,
                (c.start - c.outer_start) // s : (c.stop - c.outer_start) // s]
    return y


@lru_cache(maxsize=2)
def load_encoder(entry: zoo.WeightsEntry, arch: layout.Architecture) -> ShallowEncoder:
    return _fitted(ShallowEncoder(arch), zoo.load_tensors(entry), "", entry.model)


@lru_cache(maxsize=2)
def float_networks(dec: LoadedDecoder) -> tuple[Synthesis, HyperSynthesis]:
    """PyTorch twins of the decoder (refinement differentiates through them)."""
    return (_fitted(Synthesis(dec.arch), dec.tensors, "synthesis.", dec.entry.model),
            _fitted(fixedpoint.dequantised_hyper(dec.tensors, dec.arch), {}, None, dec.entry.model))


def _fitted(module: torch.nn.Module, tensors: dict[str, np.ndarray], prefix: str | None, what: str):
    if prefix is not None:
        state = {}
        for k, v in module.state_dict().items():
            t = tensors.get(prefix + k)
            if t is None or tuple(t.shape) != tuple(v.shape):
                raise TinyCodecError(f"{what} weights do not fit this tinycodec's network ({k}); reinstall tinycodec")
            state[k] = torch.from_numpy(np.array(t, dtype=np.float32))
        module.load_state_dict(state)
    module.eval()
    for p in module.parameters():  # refinement differentiates with respect to the latents only
        p.requires_grad_(False)
    return module


def _log_step(dec: LoadedDecoder, quality: int) -> torch.Tensor:
    return torch.log(torch.from_numpy(dec.step(quality).astype(np.float32)))[None]


def _z_log_scale(dec: LoadedDecoder, quality: int) -> torch.Tensor:
    bins = torch.from_numpy(dec.tensors["quality.z_scale_bin"][quality].astype(np.float32))
    return (math.log(SCALE_MIN) + bins * LOG_SCALE_STEP)[None]


def _integers(y: torch.Tensor, z: torch.Tensor, dec: LoadedDecoder, quality: int) -> tuple[np.ndarray, np.ndarray]:
    step = torch.from_numpy(dec.step(quality).astype(np.float32))[:, None, None]
    k = torch.round(y[0] / step).clamp(-LATENT_LIMIT, LATENT_LIMIT)
    kz = torch.round(z[0]).clamp(-LATENT_LIMIT, LATENT_LIMIT)
    return kz.numpy().astype(bitstream.LATENT_DTYPE), k.numpy().astype(bitstream.LATENT_DTYPE)


def refine_latents(y: torch.Tensor, z: torch.Tensor, x: torch.Tensor, dec: LoadedDecoder, quality: int,
                   steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient steps on y and z (the decoder fixed) under rate + lambda * MSE; cosine learning rate, noisy
    rate for the first 80% of the steps, rounded after; the noise is seeded (the same image, the same file)."""
    log_step, z_log_scale = _log_step(dec, quality), _z_log_scale(dec, quality)
    synthesis, hyper = float_networks(dec)
    step = torch.exp(log_step)[:, :, None, None]
    k = (y / step).detach().clone().requires_grad_(True)  # in quantisation steps, so one learning rate fits all
    zz = z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([k, zz], lr=REFINE_LEARNING_RATE)
    lam = quality_lambda(float(quality))
    generator = torch.Generator().manual_seed(0)
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = REFINE_LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * i / steps))
        bpp, mse, _ = rd_from_latents(synthesis, hyper, log_step, z_log_scale, k * step, zz, x,
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


def encode_planar(planar: Planar, quality: int = DEFAULT_QUALITY, effort: str = "fast",
                  refine_steps: int = DEFAULT_REFINE_STEPS, extensions: list[tuple[int, bytes]] | None = None) -> bytes:
    quality = check_request("shallow", EFFORTS, quality, effort, planar.alpha is not None)
    h, w = planar.rgb.shape[:2]
    entry = zoo.current_entry(MODEL)
    dec = load_decoder(entry)
    encoder = load_encoder(zoo.current_entry(encoder_model(MODEL)), dec.arch)
    x = _pad(planar.rgb, dec.arch)
    y = analyse(encoder, x, dec.arch)
    with torch.no_grad():
        z = encoder.hyper_analysis(y)
    header = HeaderV2(FAMILY, w, h, 1 if planar.grey else 3, quality, MODEL, entry.short_id, list(extensions or []))

    def file_of(y: torch.Tensor, z: torch.Tensor) -> tuple[bytes, np.ndarray]:
        kz, k = _integers(y, z, dec, quality)
        return pack(header, bitstream.encode_latents(kz, k, quality, dec.hyper, dec.coder)), k

    fast = file_of(y, z)
    if effort == "fast":
        return fast[0]
    check_steps(refine_steps)
    lam = quality_lambda(float(quality))

    def cost(candidate: tuple[bytes, np.ndarray]) -> float:
        data, k = candidate
        out = synthesise(k, dec.synthesis, quality, h, w).astype(np.float64)
        return 8 * len(data) / (h * w) + lam * float(np.mean((out - planar.rgb) ** 2)) / 255.0**2

    # Keep whichever file has the lower real rate-distortion cost: noisy steps can lose to the network's guess.
    refined = file_of(*refine_latents(y, z, x, dec, quality, refine_steps))
    return min((fast, refined), key=cost)[0]


def encode(image: Image.Image | np.ndarray, quality: int = DEFAULT_QUALITY, effort: str = "fast",
           refine_steps: int = DEFAULT_REFINE_STEPS) -> bytes:
    """PIL image or HxW[xC] uint8 array -> .tcz bytes of the shallow family."""
    return encode_planar(to_planar(image), quality, effort, refine_steps)
