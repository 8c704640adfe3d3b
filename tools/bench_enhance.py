"""End-to-end filter timings: what a user waits for in ``tinycodec.enhance`` / ``tcdec --enhance``.

    python tools/bench_enhance.py --kodak ../shared/data/kodak/kodim23.png

``tools/bench_backends.py`` times a network alone on one whole float32 batch.
The product never runs a filter that way: it cuts the image into overlapping
512-pixel tiles (bounded memory, no seams), converts each tile to float and
each result back to uint8. This times exactly that call, ``tinycodec.enhance``
on a uint8 image, for every filter and precision given, on a Kodak-sized
*output* (768x512) and a 1920x1080 one (super-resolution filters get the
image bicubic-downscaled by their factor, as ``tcenc --downscale 2`` +
``tcdec --enhance srunet`` would). Configurations run in turn in each round and
a speedup is the median of per-round ratios against the same filter's fp32
on the same backend (this machine's speed drifts within minutes). Writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _data import cpu_info, describe_cpu, write_report  # noqa: E402
from bench_backends import load_images, paired_speedup, time_interleaved  # noqa: E402

import tinycodec  # noqa: E402
from tinycodec.enhance import DEFAULT_TILE, parse_filter  # noqa: E402
from tinycodec.image import bicubic_down  # noqa: E402


class EnhanceCall:
    """``run(rgb)`` = one ``tinycodec.enhance`` call (the shape time_interleaved expects of a runner)."""

    def __init__(self, name: str, backend: str, tile: int) -> None:
        self.name, self.backend, self.tile = name, backend, tile

    def run(self, rgb: np.ndarray) -> Image.Image:
        return tinycodec.enhance(rgb, self.name, backend=self.backend, tile=self.tile)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png")
    ap.add_argument("--hd", type=Path, default=None, help="a 1920x1080 photograph (default: the Kodak one enlarged)")
    ap.add_argument("--images", default="kodak,1080p")
    ap.add_argument("--filters", default="unet,srunet", help="filter names, without a precision")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--backend", default="onnx", help="the same backend for every precision (a fair ratio)")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=30.0, help="per configuration (fewer runs beyond that)")
    ap.add_argument("--min-runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "bench_enhance_cpu.json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    started = time.time()
    images = {k: v for k, v in load_images(args.kodak, args.hd).items() if k in args.images.split(",")}
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rows, cpu = [], cpu_info()
    print(f"{describe_cpu(cpu)}, {args.threads} threads, backend {args.backend}, tile {args.tile}")
    for base in [f.strip() for f in args.filters.split(",") if f.strip()]:
        try:
            choice = parse_filter(base)
        except tinycodec.TinyCodecError as exc:
            raise SystemExit(f"bench_enhance: {exc}") from None
        if choice is None or choice.precision != "fp32":
            raise SystemExit(f"bench_enhance: --filters takes filter names without a precision, not {base!r}")
        spec = choice.spec
        for image_name, (rgb, source) in images.items():
            r = spec.upscale
            src = rgb if r == 1 else bicubic_down(rgb, r)
            calls = {p: EnhanceCall(base if p == "fp32" else f"{base}-{p}", args.backend, args.tile) for p in precisions}
            timings, times = time_interleaved(calls, src, args.runs, args.warmup, args.max_seconds, args.min_runs)
            for p, timing in timings.items():
                row = {"filter": base, "precision": p, "backend": args.backend, "image": image_name,
                       "image_source": source, "input_size": [src.shape[1], src.shape[0]],
                       "output_size": [src.shape[1] * r, src.shape[0] * r], **timing,
                       "speedup_vs_fp32": paired_speedup(times, p, "fp32")}
                rows.append(row)
                print(f"{base:>12} {p:>5} {image_name:>6} in {src.shape[1]}x{src.shape[0]}: "
                      f"median {timing['median_ms']:8.1f} ms (p10-p90 {timing['p10_ms']:.0f}-{timing['p90_ms']:.0f}, "
                      f"{timing['runs']} runs), speedup vs fp32 {row['speedup_vs_fp32']}", flush=True)
    write_report(args.json, {
        "command": "python tools/bench_enhance.py " + " ".join(sys.argv[1:]),
        "machine": {**cpu, "cores": os.cpu_count(), "threads": args.threads},
        "versions": {"tinycodec": tinycodec.__version__, "torch": torch.__version__},
        "wall_s": round(time.time() - started, 1), "results": rows})


if __name__ == "__main__":
    main()
