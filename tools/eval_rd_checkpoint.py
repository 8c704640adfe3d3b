"""Rate-distortion of a training checkpoint's best point on whole images, against JPEG on the same images.

    python tools/eval_rd_checkpoint.py training/shallow.safetensors ../shared/data/val

Rates are the model's own estimate (-log2 of the discretised Laplace of the rounded latents, no file
overhead); distortion is PSNR-RGB of the rounded reconstruction, per image, averaged (the CompressAI convention,
as `tinycodec rd`). For choosing checkpoints and settings on the validation folder; the shipped codec's
figures come from `tinycodec rd`, which codes real files.
"""

from __future__ import annotations

import argparse
import io
import json

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import image_paths, load_rgb  # noqa: E402
from train_pyramid import FAMILIES, load_checkpoint  # noqa: E402

from tinycodec.shallow.layout import ARCHITECTURES  # noqa: E402

from tinycodec.rd import bd_rate, psnr  # noqa: E402

QUALITIES = (0, 12, 25, 37, 50, 62, 75, 87, 100)
JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def jpeg_point(rgb: np.ndarray, quality: int) -> tuple[float, float]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        out = np.asarray(im.convert("RGB"))
    return 8 * buf.tell() / (rgb.shape[0] * rgb.shape[1]), psnr(rgb, out)


@torch.no_grad()
def model_point(encoder, decoder, family, rgb: np.ndarray, q: int) -> tuple[float, float]:
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    ph, pw = -h % 64, -w % 64
    x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    qq = torch.tensor([q])
    bpp, _, recon = FAMILIES[family][2].rd_forward(encoder, decoder, x, qq, noise=False)
    bits = bpp.item() * x.shape[2] * x.shape[3]
    out = (recon[0, :, :h, :w].clamp(0, 1) * 255).round().byte().numpy().transpose(1, 2, 0)
    return bits / (h * w), psnr(rgb, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("data", help="image folder (the validation folder when choosing)")
    ap.add_argument("--family", default=None, help="default: from the checkpoint's file name")
    ap.add_argument("--current", action="store_true", help="the latest weights, not the best validation point")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    family = args.family or args.checkpoint.stem.split("-")[0]
    enc_class, dec_class, _ = FAMILIES[family]
    arch = (ARCHITECTURES[args.checkpoint.stem],) if family == "shallow" else ()
    ckpt = load_checkpoint(args.checkpoint, torch.device("cpu"))
    src = ckpt if args.current or ckpt["best"] is None else ckpt["best"]
    encoder, decoder = enc_class(*arch), dec_class(*arch)
    encoder.load_state_dict(src["encoder"])
    decoder.load_state_dict(src["decoder"])
    encoder.eval()
    decoder.eval()
    images = [load_rgb(p) for p in image_paths(args.data)]
    curve = {"model": [], "jpeg": []}
    for q in QUALITIES:
        pts = [model_point(encoder, decoder, family, im, q) for im in images]
        curve["model"].append((float(np.mean([p[0] for p in pts])), float(np.mean([p[1] for p in pts]))))
        print(f"q{q:3d}: {curve['model'][-1][0]:.3f} bpp {curve['model'][-1][1]:.2f} dB", flush=True)
    for jq in JPEG_QUALITIES:
        pts = [jpeg_point(im, jq) for im in images]
        curve["jpeg"].append((float(np.mean([p[0] for p in pts])), float(np.mean([p[1] for p in pts]))))
    m, j = np.array(curve["model"]), np.array(curve["jpeg"])
    bd = bd_rate(j[:, 0], j[:, 1], m[:, 0], m[:, 1])
    step = src.get("step", ckpt["step"])
    print(f"{family} step {step}: BD-rate vs JPEG {bd:+.1f}% on {len(images)} images of {args.data}")
    if args.json:
        args.json.write_text(json.dumps({"family": family, "step": step, "bd_rate_vs_jpeg": bd,
                                         "curve": curve}, indent=1) + "\n")


if __name__ == "__main__":
    main()
