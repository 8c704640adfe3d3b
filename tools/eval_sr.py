#!/usr/bin/env python3
"""Evaluate the enhancement filters.

1. Super-resolution (``--scale 2|4``): TinyPSSR against bicubic on the SR test
   sets (DATA_DIR/sr/Set5, Set14, BSD68). Each HR image is cropped to a multiple
   of the scale, downscaled with Pillow's bicubic (the degradation the filters
   were trained on), and enlarged again. PSNR and SSIM are computed on the Y
   channel (ITU-R BT.601, as the SR literature and the seed do) with ``scale``
   border pixels cropped.
2. Codec + filters on Kodak (DATA_DIR/kodak): for every scale level, PSNR
   (RGB) and MS-SSIM of tinycodec decoding with and without ``--enhance unet``,
   and the low-rate points of ``tcenc --downscale 2`` decoded with bicubic and
   with ``--enhance srunet``, next to plain tinycodec.

    python tools/eval_sr.py ../shared/data --scale 2 --json docs/results/eval_sr_x2.json
    python tools/eval_sr.py ../shared/data --scale 4 --skip-codec --json docs/results/eval_sr_x4.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_msssim import ssim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinycodec  # noqa: E402
from _data import load_rgb, write_report  # noqa: E402
from tinycodec.rd import list_images, luma_bt601, ms_ssim_rgb, psnr  # noqa: E402

SR_SETS = ("Set5", "Set14", "BSD68")
CODEC_SCALES = (4, 16, 64, 256)


def ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    ta = torch.from_numpy(a / 255.0)[None, None].float()
    tb = torch.from_numpy(b / 255.0)[None, None].float()
    return float(ssim(ta, tb, data_range=1.0))


def eval_sr(data: Path, scale: int, sets: list[str]) -> dict:
    filters = [f"tinypssr-x{scale}"]
    results = {}
    for name in sets:
        folder = data / "sr" / name
        rows = []
        for path in list_images(folder):
            hr = load_rgb(path)
            h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
            hr = hr[:h, :w]
            lr = Image.fromarray(hr).resize((w // scale, h // scale), Image.BICUBIC)
            outputs = {"bicubic": np.asarray(lr.resize((w, h), Image.BICUBIC))}
            for f in filters:
                outputs[f] = np.asarray(tinycodec.enhance(lr, f))
            hr_y = luma_bt601(hr)[scale:-scale, scale:-scale]
            row = {"image": path.name}
            for key, out in outputs.items():
                out_y = luma_bt601(out)[scale:-scale, scale:-scale]
                row[key] = {"psnr_y": psnr(out_y, hr_y), "ssim_y": ssim_y(out_y, hr_y)}
            rows.append(row)
        mean = {
            key: {m: float(np.mean([r[key][m] for r in rows])) for m in ("psnr_y", "ssim_y")}
            for key in ["bicubic", *filters]
        }
        results[name] = {"images": len(rows), "mean": mean, "per_image": rows}
        line = "  ".join(f"{k} {v['psnr_y']:.2f} dB / {v['ssim_y']:.4f}" for k, v in mean.items())
        print(f"x{scale} {name:6s} ({len(rows):3d} images): {line}", flush=True)
    return results


def eval_codec(data: Path, limit: int | None) -> dict:
    paths = list_images(data / "kodak")[:limit]
    rows: dict[str, list[dict]] = {}

    def add(key: str, bpp: float, out: np.ndarray, ref: np.ndarray, ms: float) -> None:
        rows.setdefault(key, []).append({"bpp": bpp, "psnr": psnr(out, ref), "ms_ssim": ms_ssim_rgb(out, ref),
                                          "ms": ms})

    for path in paths:
        ref = load_rgb(path)
        pixels = ref.shape[0] * ref.shape[1]
        for s in CODEC_SCALES:
            data_full = tinycodec.encode(ref, scale=s)
            data_small = tinycodec.encode(ref, scale=s, downscale=2)
            for key, blob, enhance in [
                (f"s{s}", data_full, "none"),
                (f"s{s}+unet", data_full, "unet"),
                (f"down2-s{s}", data_small, "none"),
                (f"down2-s{s}+srunet", data_small, "srunet"),
            ]:
                t0 = time.perf_counter()
                if enhance == "unet":  # the filter itself, also on levels its FilterSpec.scales would make tcdec skip
                    out = np.asarray(tinycodec.enhance(tinycodec.decode(blob), "unet"))
                else:
                    out = np.asarray(tinycodec.decode(blob, enhance=enhance))
                add(key, 8 * len(blob) / pixels, out, ref, 1000 * (time.perf_counter() - t0))
        print(f"{path.name} done", flush=True)
    summary = {key: {m: float(np.mean([r[m] for r in v])) for m in ("bpp", "psnr", "ms_ssim", "ms")}
               for key, v in rows.items()}
    print(f"{'kodak':22s} {'bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} {'decode ms':>9s}")
    for key, v in summary.items():
        print(f"{key:22s} {v['bpp']:7.4f} {v['psnr']:7.2f} {v['ms_ssim']:8.4f} {v['ms']:9.0f}")
    return {"images": len(paths), "mean": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="data folder holding sr/Set5, sr/Set14, sr/BSD68 and kodak/")
    ap.add_argument("--scale", type=int, choices=[2, 4], default=2)
    ap.add_argument("--sets", nargs="+", default=list(SR_SETS))
    ap.add_argument("--skip-sr", action="store_true", help="skip the super-resolution sets")
    ap.add_argument("--skip-codec", action="store_true", help="skip the Kodak codec + filter evaluation")
    ap.add_argument("--limit", type=int, default=None, help="first N Kodak images only")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    report: dict = {"scale": args.scale, "torch_threads": args.threads}
    if not args.skip_sr:
        report["sr"] = eval_sr(args.data, args.scale, args.sets)
    if not args.skip_codec:
        report["kodak"] = eval_codec(args.data, args.limit)
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
