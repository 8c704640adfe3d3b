#!/usr/bin/env python3
"""Train one TinyCompress scale level; resumable; writes weights/<model>.safetensors.

Quantisation-aware: every batch goes through the product's quantiser (per-image
min-max to 8 bits, a random number of kept bit-planes per sample, bin-centre
reconstruction), with straight-through gradients, so the decoder learns the
latents it will really get and fewer planes degrade gracefully.

The model card (weights/README.md) lists the exact commands that produced the
shipped files, and tools/train_all.sh runs them. Deeper levels start from a
resampler (--init-resampler); from the level below they collapse to grey:

    python tools/train_codec.py DATA/train --scale 16 --steps 16000 --lr 3e-4 --clip-grad 0.5 --init-resampler

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import CropSampler, image_paths, load_rgb  # noqa: E402

from tinycodec.models import TinyCompress, count_parameters, from_state_dict, init_as_resampler, untie  # noqa: E402
from tinycodec.quantize import fake_quantize  # noqa: E402
from tinycodec.zoo import model_name, save_weights  # noqa: E402

# Share of training samples per number of kept planes (index 0 = 1 plane).
# Most weight on 8 planes, the default operating point; enough on the others
# for the decoder to handle coarse latents well.
PLANE_WEIGHTS = np.array([0.03, 0.03, 0.05, 0.08, 0.10, 0.12, 0.14, 0.45])
VALIDATION_IMAGES = 4  # the last N training images (sorted by name) are held out
VAL_CROP = 512


def default_crop(scale: int) -> int:
    # The latent of a crop should stay at least 8x8 so the decoder sees context.
    return {4: 64, 16: 64, 64: 96, 256: 128}[scale]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a - b) ** 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def centre_crop(im: np.ndarray, size: int) -> torch.Tensor:
    h, w = im.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    patch = im[y : y + size, x : x + size].transpose(2, 0, 1).astype(np.float32) / 255
    return torch.from_numpy(np.ascontiguousarray(patch))


@torch.no_grad()
def validate(model: TinyCompress, val: torch.Tensor) -> dict[str, float]:
    model.eval()
    out = {}
    latent = model.encoder(val)
    for planes in (8, 6, 4):
        p = torch.full((val.shape[0],), planes)
        out[f"psnr_p{planes}"] = psnr(model.decoder(fake_quantize(latent, p)).clamp(0, 1), val)
    model.train()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder of training photographs (never Kodak)")
    ap.add_argument("--scale", type=int, required=True, choices=[4, 16, 64, 256])
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=None, help="crop side (default depends on scale)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from these weights; shared-block weights are copied into every iteration "
                         "when training --per-iteration-blocks")
    ap.add_argument("--per-iteration-blocks", action="store_true",
                    help="one encoding and one decoding block per iteration (k x the parameters) "
                         "instead of the same block k times")
    ap.add_argument("--init-resampler", action="store_true",
                    help="start from average pooling / bilinear upsampling weights (see models.init_as_resampler)")
    ap.add_argument("--out", type=Path, default=Path("weights"))
    ap.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    ap.add_argument("--clip-grad", type=float, default=0.0,
                    help="clip the gradient norm to this (0: off); deeper levels need it to train stably")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--checkpoint-every", type=int, default=500)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    crop = args.crop or default_crop(args.scale)
    name = model_name(args.scale)

    paths = image_paths(args.data)
    images = [load_rgb(p) for p in paths]
    train_images, val_images = images[:-VALIDATION_IMAGES], images[-VALIDATION_IMAGES:]
    val = torch.stack([centre_crop(im, VAL_CROP) for im in val_images])
    sampler = CropSampler(train_images, seed=args.seed)
    plane_rng = np.random.default_rng(args.seed + 1)

    shared = not args.per_iteration_blocks
    model = TinyCompress(args.scale, shared=shared)
    if args.init_resampler:
        init_as_resampler(model, seed=args.seed)
    if args.init_from:
        from safetensors.torch import load_file

        start = from_state_dict(args.scale, load_file(args.init_from))
        if shared and not start.shared:
            sys.exit("--init-from: per-iteration-block weights cannot start a shared-block model")
        model = untie(start) if start.shared and not shared else start
    model = model.to(memory_format=torch.channels_last)  # 3x faster convs on CPU here
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # Cosine decay to 1% of the peak after a short warm-up.
    warmup = min(500, args.steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))

    ckpt_path = args.checkpoints / f"{name}.pt"
    step = 0
    history: list[dict] = []
    if ckpt_path.exists():
        # Our own checkpoint (optimizer state included); the product never loads these.
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step, history = ckpt["step"], ckpt["history"]
        sampler.rng.bit_generator.state = ckpt["sampler_rng"]
        plane_rng.bit_generator.state = ckpt["plane_rng"]
        print(f"resumed {name} at step {step}", flush=True)

    print(
        f"training {name}: {count_parameters(model.encoder)} + {count_parameters(model.decoder)} params, "
        f"{len(train_images)} train / {len(val_images)} val images, batch {args.batch}x{crop}x{crop}, "
        f"{args.steps} steps",
        flush=True,
    )

    def save_checkpoint() -> None:
        args.checkpoints.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "history": history,
                "sampler_rng": sampler.rng.bit_generator.state,
                "plane_rng": plane_rng.bit_generator.state,
            },
            tmp,
        )
        tmp.replace(ckpt_path)

    t0, loss_acc, n_acc = time.time(), 0.0, 0
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = torch.from_numpy(sampler.batch(args.batch, crop)).contiguous(memory_format=torch.channels_last)
        planes = torch.from_numpy(plane_rng.choice(8, size=args.batch, p=PLANE_WEIGHTS) + 1)
        recon = model.decoder(fake_quantize(model.encoder(x), planes))
        loss = torch.mean((recon - x) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        opt.step()
        step += 1
        loss_acc, n_acc = loss_acc + loss.item(), n_acc + 1
        if step % args.log_every == 0 or step == args.steps:
            entry = {"step": step, "train_mse": loss_acc / n_acc, "lr": lr_at(step - 1),
                     "s_per_step": (time.time() - t0) / n_acc, **validate(model, val)}
            history.append(entry)
            print(json.dumps(entry), flush=True)
            t0, loss_acc, n_acc = time.time(), 0.0, 0
        if step % args.checkpoint_every == 0:
            save_checkpoint()
    save_checkpoint()

    final = history[-1] if history else validate(model, val)
    meta = {
        "model": name,
        "scale": str(args.scale),
        "blocks": "shared" if shared else "per-iteration",
        "steps": str(step),
        "batch": f"{args.batch}x{crop}x{crop}",
        "data": f"{len(train_images)} images of {Path(args.data).name}/ (last {VALIDATION_IMAGES} held out)",
        "command": "python tools/train_codec.py " + " ".join(sys.argv[1:]),
        "val_psnr_p8": f"{final['psnr_p8']:.2f}",
    }
    path = save_weights(model.to(memory_format=torch.contiguous_format), args.out / f"{name}.safetensors", meta)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
