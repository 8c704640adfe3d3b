#!/usr/bin/env python3
"""Train one enhancement filter; resumable; writes weights/<filter>.safetensors.

Each filter trains on what it will see in the product:

- tinypssr-x2 / tinypssr-x4: 64x64 HR patches and their bicubic-downscaled
  versions (Pillow BICUBIC over the whole image, the degradation eval_sr.py
  measures), one colour channel at a time, as in the seed; the network starts
  as exact bicubic upscaling (filters.init_tinypssr_as_bicubic).
- unet: training photographs and what tinycodec returns for them at every
  scale level with 8 and 6 kept planes.
- srunet: training photographs and what ``tcenc --downscale 2`` + ``tcdec``
  returns for them (bicubic 2x down, tinycodec at every scale, 8 and 6 planes).

The decoded inputs are made once with the shipped codec weights and cached
under --cache (they are only valid for those weights: the cache is keyed by
their hashes). Loss: L1 + w * (1 - SSIM), w = 0.1 for TinyPSSR (the seed found
SSIM and MAE losses close) and 0 for UNet/SRUNet: with w = 0.1 their PSNR
on the validation pairs *fell* below the unfiltered input in the first 750
steps, and they are judged on PSNR. ``--loss psnr`` (minus the crops' mean
PSNR) weighs every codec level alike where L1 lets the blurrier levels'
larger errors lead: as UNet's last phase it took Kodak scale 4 from +0.01 to
+0.11 dB for 0.01-0.02 dB at scales 16-256; as a 600-step SRUNet fine-tune it
did worse than L1 (+0.037 against +0.043 dB on the validation pairs). LPIPS
(the seed's choice for the UNets) needs ImageNet backbone weights we cannot
download here.

    python tools/train_filters.py DATA/train --filter tinypssr-x2 --steps 20000

Kill it at any time; rerunning the same command resumes from checkpoints/.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_msssim import ssim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import image_paths, load_rgb  # noqa: E402

from tinycodec.codec import simulate_rgb  # noqa: E402
from tinycodec.filters import FILTERS, FilterSpec, init_tinypssr_as_bicubic, run_filter  # noqa: E402
from tinycodec.image import bicubic_down  # noqa: E402
from tinycodec.zoo import current_entry, model_name, save_weights  # noqa: E402

VALIDATION_IMAGES = 4  # the last N training images (sorted by name) are held out, as for the codec
CODEC_SCALES = (4, 16, 64, 256)
CODEC_PLANES = (8, 6)


def make_pairs(spec: FilterSpec, images: list[np.ndarray], cache: Path, tag: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, target) uint8 pairs for a filter; target is ``spec.upscale`` times the input's size."""
    r = spec.upscale
    pairs = []
    for i, hr in enumerate(images):
        hr = hr[: hr.shape[0] // r * r, : hr.shape[1] // r * r]
        if spec.name.startswith("tinypssr"):
            pairs.append((bicubic_down(hr, r), hr))
            continue
        source = bicubic_down(hr, r) if r > 1 else hr
        for scale in CODEC_SCALES:
            for planes in CODEC_PLANES:
                # Keyed by the codec weights: decoded images from other weights would be wrong data.
                key = f"{spec.name}-{tag}{i:03d}-s{scale}p{planes}-{current_entry(model_name(scale)).sha256[:12]}.png"
                path = cache / key
                if path.exists():
                    decoded = np.asarray(Image.open(path).convert("RGB"))
                else:
                    decoded = simulate_rgb(source, scale, planes)
                    cache.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp.png")
                    Image.fromarray(decoded).save(tmp)
                    tmp.replace(path)
                pairs.append((decoded, hr))
    return pairs


class PairSampler:
    """Aligned random crops (with flips and transposes) of (input, target) pairs, area-weighted."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], upscale: int, seed: int) -> None:
        self.pairs, self.r = pairs, upscale
        areas = np.array([p[0].shape[0] * p[0].shape[1] for p in pairs], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, crop: int, one_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
        r, c = self.r, (1 if one_channel else 3)
        xs = np.empty((size, c, crop, crop), np.float32)
        ys = np.empty((size, c, crop * r, crop * r), np.float32)
        for i, idx in enumerate(self.rng.choice(len(self.pairs), size=size, p=self.weights)):
            inp, tgt = self.pairs[idx]
            y0 = self.rng.integers(0, inp.shape[0] - crop + 1)
            x0 = self.rng.integers(0, inp.shape[1] - crop + 1)
            a = inp[y0 : y0 + crop, x0 : x0 + crop]
            b = tgt[y0 * r : (y0 + crop) * r, x0 * r : (x0 + crop) * r]
            if one_channel:
                ch = self.rng.integers(0, 3)
                a, b = a[..., ch : ch + 1], b[..., ch : ch + 1]
            if self.rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            if self.rng.random() < 0.5:
                a, b = a[::-1], b[::-1]
            if self.rng.random() < 0.5:
                a, b = a.transpose(1, 0, 2), b.transpose(1, 0, 2)
            xs[i] = a.transpose(2, 0, 1)
            ys[i] = b.transpose(2, 0, 1)
        return torch.from_numpy(xs / 255.0), torch.from_numpy(ys / 255.0)


def crop_psnr_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Minus the mean PSNR of the crops, in dB: what the filters are judged on.

    Mean squared error over the batch weighs crops by their error, so the
    blurriest decodes (scale 256) would drive the training; PSNR is logarithmic,
    so each crop's *relative* error counts the same, whatever its level.
    """
    mse = torch.mean((out - y) ** 2, dim=(1, 2, 3)).clamp_min(1e-10)
    return torch.mean(10 * torch.log10(mse))


LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "psnr": crop_psnr_loss}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / max(torch.mean((a - b) ** 2).item(), 1e-12))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float() / 255.0


def baseline(spec: FilterSpec, x: torch.Tensor) -> torch.Tensor:
    """What the user gets without the filter: the input itself, or its bicubic enlargement."""
    if spec.upscale == 1:
        return x
    return F.interpolate(x, scale_factor=float(spec.upscale), mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def validate(model: torch.nn.Module, spec: FilterSpec, val: list[tuple[np.ndarray, np.ndarray]],
             device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Mean PSNR gain over the baseline; for the UNets also per codec scale level (the filter may
    help one level and hurt another: that decides FilterSpec.scales)."""
    model.eval()
    gain, base, ssim_base, ssim_out = [], [], [], []
    for inp, tgt in val:
        x, y = to_tensor(inp).to(device), to_tensor(tgt).to(device)
        plain, filtered = baseline(spec, x), run_filter(model, spec, x)
        b = psnr(plain, y)
        base.append(b)
        gain.append(psnr(filtered, y) - b)
        ssim_base.append(ssim(plain, y, data_range=1.0).item())
        ssim_out.append(ssim(filtered, y, data_range=1.0).item())
    model.train()
    out = {"val_psnr": float(np.mean(base) + np.mean(gain)), "val_gain_db": float(np.mean(gain)),
           "val_ssim": round(float(np.mean(ssim_out)), 4),
           "val_ssim_gain": round(float(np.mean(ssim_out) - np.mean(ssim_base)), 4)}
    if not spec.per_channel:  # make_pairs' order: image, then scale, then planes
        per_scale = np.reshape(gain, (-1, len(CODEC_SCALES), len(CODEC_PLANES))).mean(axis=(0, 2))
        out.update({f"gain_s{s}": round(float(g), 3) for s, g in zip(CODEC_SCALES, per_scale)})
    return out


def centre(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return rgb[y : y + size, x : x + size]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder of training photographs (never Kodak or the SR test sets)")
    ap.add_argument("--filter", required=True, choices=sorted(FILTERS))
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=None, help="default: 64 for TinyPSSR, 8 for (SR)UNet")
    ap.add_argument("--crop", type=int, default=None,
                    help="input crop side (default: 64 / upscale for TinyPSSR's 64x64 HR patches, 96 for UNet, 64 for SRUNet)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    ap.add_argument("--loss", choices=sorted(LOSSES), default="l1",
                    help="pixel loss: l1, mse, or psnr (minus the mean PSNR of the crops: crop_psnr_loss)")
    ap.add_argument("--ssim-weight", type=float, default=None, help="w in LOSS + w (1 - SSIM); default 0.1 TinyPSSR, 0 UNets")
    ap.add_argument("--centre-crop", type=int, default=None,
                    help="train on centre crops of at most this side (the GPU runs used 768: what fitted the transfer)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from these weights (a fine-tune, e.g. on the pairs of retrained codec weights)")
    ap.add_argument("--reinit", default="",
                    help="comma-separated submodules (e.g. dec0,head) to reset to their from-scratch initialisation "
                         "after --init-from: revives a stage whose ReLUs have died")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="unet only: weights of the v3 full-resolution UNet (tools/unet_v3.py); its output on each "
                         "crop replaces the real target (distillation: a target without the unrecoverable part)")
    ap.add_argument("--out", type=Path, default=Path("weights"))
    ap.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    ap.add_argument("--cache", type=Path, default=Path(".data/filter_pairs"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training only; the product's backends are separate)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="checkpoint and stop after this much training time, without writing weights (rerun to resume)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--stop-at", type=int, default=None,
                    help="checkpoint and stop at this step without writing weights (to change settings mid-schedule, "
                         "as tools/train_filters.sh does)")
    args = ap.parse_args()
    if args.reinit and not args.init_from:
        ap.error("--reinit resets parts of the --init-from weights: give --init-from too")
    if args.teacher and args.filter != "unet":
        ap.error("--teacher: only the unet has a teacher (the v3 full-resolution UNet)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    spec = FILTERS[args.filter]
    tiny = spec.per_channel
    batch = args.batch or (64 if tiny else 8)
    crop = args.crop or (64 // spec.upscale if tiny else (96 if spec.upscale == 1 else 64))
    if crop % spec.multiple:
        ap.error(f"--crop: {spec.name} needs crops that are multiples of {spec.multiple}")
    peak_lr = args.lr or 1e-3
    ssim_weight = args.ssim_weight if args.ssim_weight is not None else (0.1 if tiny else 0.0)

    paths = image_paths(args.data)
    images = [load_rgb(p) for p in paths]
    tag = "train"
    if args.centre_crop:
        images = [centre(im, min(args.centre_crop, *im.shape[:2])) for im in images]
        tag = f"train-c{args.centre_crop}"  # cached pairs are keyed by what they were made from
    train_images, val_images = images[:-VALIDATION_IMAGES], images[-VALIDATION_IMAGES:]
    t_prep = time.time()
    pairs = make_pairs(spec, train_images, args.cache, tag)
    val_pairs = make_pairs(spec, [centre(im, 384) for im in val_images], args.cache, "val")
    print(f"{len(pairs)} training pairs, {len(val_pairs)} validation pairs ({time.time() - t_prep:.0f} s)", flush=True)
    sampler = PairSampler(pairs, spec.upscale, args.seed)

    model = spec.build()
    if tiny:
        # From random weights the seed network sat 0.6 dB *below* bicubic after
        # 3,000 steps here; starting as bicubic it only has to learn the gain.
        init_tinypssr_as_bicubic(model)
    else:
        model = model.to(memory_format=torch.channels_last)
    if args.init_from:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(args.init_from))
        if args.reinit:
            # The from-scratch initialisation of those parts (the head's is zero: the filter restarts as its skip).
            fresh = spec.build()
            for name in args.reinit.split(","):
                if not isinstance(getattr(model, name, None), torch.nn.Module):
                    sys.exit(f"--reinit: {spec.name} has no submodule '{name}'")
                getattr(model, name).load_state_dict(getattr(fresh, name).state_dict())
        # The starting point's gain on these pairs: what the fine-tune has to beat.
        print(json.dumps({"step": 0, "init_from": str(args.init_from), **validate(model, spec, val_pairs, torch.device("cpu"))}), flush=True)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed crop sizes: let cuDNN pick its kernels
    model = model.to(device)
    teacher = None
    if args.teacher:
        from unet_v3 import load_teacher

        teacher = load_teacher(args.teacher, device)
    opt = torch.optim.Adam(model.parameters(), lr=peak_lr)
    warmup = min(500, args.steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return peak_lr * (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return peak_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))

    ckpt_path = args.checkpoints / f"{spec.name}.pt"
    step, history = 0, []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False, map_location=device)  # our own checkpoint; the product never loads these
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step, history = ckpt["step"], ckpt["history"]
        sampler.rng.bit_generator.state = ckpt["sampler_rng"]
        print(f"resumed {spec.name} at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {spec.name}: {n_params} params, batch {batch}x{crop}x{crop}, {args.steps} steps", flush=True)

    def save_checkpoint() -> None:
        args.checkpoints.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
                    "sampler_rng": sampler.rng.bit_generator.state}, tmp)
        tmp.replace(ckpt_path)

    t0, loss_acc, n_acc = time.time(), 0.0, 0
    end = min(args.steps, args.stop_at) if args.stop_at else args.steps
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else None
    while step < end and (deadline is None or time.time() < deadline):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = sampler.batch(batch, crop, one_channel=tiny)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if not tiny:
            x = x.contiguous(memory_format=torch.channels_last)
        if teacher is not None:
            with torch.no_grad():
                y = teacher(x)
        out = model(x)
        loss = LOSSES[args.loss](out, y)
        if ssim_weight:
            loss = loss + ssim_weight * (1 - ssim(out.clamp(0, 1), y, data_range=1.0, win_size=7))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_acc, n_acc = loss_acc + loss.item(), n_acc + 1
        if step % args.log_every == 0 or step == args.steps:
            entry = {"step": step, "loss": loss_acc / n_acc, "lr": lr_at(step - 1),
                     "s_per_step": (time.time() - t0) / n_acc, **validate(model, spec, val_pairs, device)}
            history.append(entry)
            print(json.dumps(entry), flush=True)
            t0, loss_acc, n_acc = time.time(), 0.0, 0
        if step % args.checkpoint_every == 0:
            save_checkpoint()
    save_checkpoint()
    if step < args.steps:
        print(f"stopped at step {step} of {args.steps}; rerun to resume", flush=True)
        return

    final = history[-1] if history else validate(model, spec, val_pairs, device)
    model = model.cpu()
    meta = {
        "model": spec.name,
        "steps": str(step),
        "batch": f"{batch}x{crop}x{crop}",
        "params": str(n_params),
        "loss": (f"{args.loss} + {ssim_weight} * (1 - SSIM)" if ssim_weight else args.loss)
        + (" against the teacher's output" if teacher is not None else ""),
        "data": f"{len(train_images)} images of {Path(args.data).name}/ (last {VALIDATION_IMAGES} held out)",
        "command": "python tools/train_filters.py " + " ".join(sys.argv[1:]),
        "val_gain_db": f"{final['val_gain_db']:.3f}",
    }
    path = save_weights(model.to(memory_format=torch.contiguous_format), args.out / f"{spec.name}.safetensors", meta)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
