"""What latent refinement (effort refine) buys against its steps, measured on real files.

    python tools/refine_gain_pyramid.py ../shared/data/val --steps 0,25,50,100 --qualities 20,50,80

Centre crops (``--crop``) of the images of a folder (the validation folder: refinement's settings are chosen
there, never on a benchmark set), encoded through ``tinycodec.encode`` at each quality with each number of
steps (0 = effort fast), decoded, measured: mean bpp of the files, mean PSNR-RGB, mean encode seconds, and
the rate-distortion cost ``bpp + lambda(q) * MSE`` relative to effort fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import image_paths, load_rgb, write_report  # noqa: E402

import tinycodec  # noqa: E402
from tinycodec.pyramid.model import quality_lambda  # noqa: E402


def centre(im: np.ndarray, size: int) -> np.ndarray:
    h, w = im.shape[:2]
    s = min(size, h, w)
    return np.ascontiguousarray(im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--steps", default="0,25,50,100")
    ap.add_argument("--qualities", default="20,50,80")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = [centre(load_rgb(p), args.crop) for p in image_paths(args.folder)]
    rows = []
    for q in map(int, args.qualities.split(",")):
        base = None
        for steps in map(int, args.steps.split(",")):
            bpp, psnr, cost, secs = [], [], [], []
            for im in images:
                t = time.perf_counter()
                data = tinycodec.encode(im, quality=q, family="pyramid", effort="refine" if steps else "fast",
                                        refine=steps)
                secs.append(time.perf_counter() - t)
                out = np.asarray(tinycodec.decode(data)).astype(np.float64)
                mse = np.mean((out - im) ** 2) / 255.0**2
                b = 8 * len(data) / (im.shape[0] * im.shape[1])
                bpp.append(b)
                psnr.append(-10 * np.log10(mse))
                cost.append(b + quality_lambda(float(q)) * mse)
            row = {"quality": q, "steps": steps, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr)),
                   "rd_cost": float(np.mean(cost)), "encode_s": float(np.mean(secs))}
            base = base or row
            row["rd_cost_vs_fast"] = row["rd_cost"] / base["rd_cost"]
            rows.append(row)
            print(f"q{q:>3} steps {steps:>4}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB, cost x{row['rd_cost_vs_fast']:.3f}, "
                  f"encode {row['encode_s']:.1f} s", flush=True)
    if args.json:
        write_report(args.json, {"tool": "tools/refine_gain_pyramid.py", "folder": str(args.folder),
                                 "crop": args.crop, "threads": args.threads, "rows": rows})


if __name__ == "__main__":
    main()
