#!/usr/bin/env python3
"""Choose latent refinement's rate weight per scale level, on training images (never Kodak).

    python tools/tune_refine.py ../shared/data/train --scales 4,16 --weights 0.5,1,2,4 --json runs/tune_s4_16.json

For every scale, planes 8..4 and rate weight, encodes centre crops of every
n-th training image with ``refine=STEPS`` (real files, real entropy coder)
and decodes them; prints per weight the mean bpp and PSNR-RGB at 8 planes
against the unrefined encoder, and the Bjontegaard deltas (rate at equal
PSNR, PSNR at equal rate) of the scale's planes curve against unrefined
encoding. The weight with the lowest BD-rate goes into tinycodec/refine.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinycodec  # noqa: E402
from tinycodec.rd import bd_quality, bd_rate, list_images, load_rgb, psnr  # noqa: E402

PLANES = (8, 7, 6, 5, 4)


def centre_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(rgb[y : y + side, x : x + side])


def point(images: list[np.ndarray], scale: int, planes: int, steps: int, weight: float | None) -> tuple[float, float]:
    """Mean (bpp, PSNR-RGB) over the images of one setting."""
    from tinycodec import refine

    saved = dict(refine.RATE_WEIGHT)
    if weight is not None:
        refine.RATE_WEIGHT[scale] = weight
    try:
        bpps, psnrs = [], []
        for rgb in images:
            data = tinycodec.encode(rgb, scale=scale, planes=planes, refine=steps if weight is not None else 0)
            out = np.asarray(tinycodec.decode(data).convert("RGB"))
            bpps.append(8 * len(data) / (rgb.shape[0] * rgb.shape[1]))
            psnrs.append(psnr(rgb, out))
    finally:
        refine.RATE_WEIGHT.update(saved)
    return float(np.mean(bpps)), float(np.mean(psnrs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--scales", default="4,16,64,256")
    parser.add_argument("--weights", default="0.5,1,2,4")
    parser.add_argument("--steps", type=int, default=None, help="default: tinycodec.refine.DEFAULT_STEPS")
    parser.add_argument("--every", type=int, default=6, help="use every n-th image of the folder")
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tinycodec.refine import DEFAULT_STEPS

    steps = args.steps or DEFAULT_STEPS
    paths = list_images(args.data_dir)[:: args.every]
    images = [centre_crop(load_rgb(p), args.crop) for p in paths]
    print(f"{len(images)} images ({', '.join(p.name for p in paths)}), crops of {args.crop}, {steps} steps",
          flush=True)
    report: dict = {"images": [p.name for p in paths], "crop": args.crop, "steps": steps, "scales": {}}
    for scale in (int(s) for s in args.scales.split(",")):
        start = time.perf_counter()
        base = [point(images, scale, p, steps, None) for p in PLANES]
        rows = {"unrefined": base}
        print(f"scale {scale}: unrefined 8 planes {base[0][0]:.4f} bpp {base[0][1]:.2f} dB", flush=True)
        for weight in (float(w) for w in args.weights.split(",")):
            pts = [point(images, scale, p, steps, weight) for p in PLANES]
            rows[str(weight)] = pts
            rate = bd_rate([b for b, _ in base], [q for _, q in base], [b for b, _ in pts], [q for _, q in pts])
            gain = bd_quality([b for b, _ in base], [q for _, q in base], [b for b, _ in pts], [q for _, q in pts])
            print(f"  weight {weight:>4}: 8 planes {pts[0][0]:.4f} bpp ({100 * (pts[0][0] / base[0][0] - 1):+.1f}%) "
                  f"{pts[0][1]:.2f} dB ({pts[0][1] - base[0][1]:+.2f}); BD-rate {rate:+.1f}%, BD-PSNR {gain:+.2f} dB"
                  f"  [{time.perf_counter() - start:.0f} s]", flush=True)
        report["scales"][str(scale)] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
