"""Time the pyramid family per image: encode (fast), decode, and its parts, against Pillow's JPEG in the same run.

    python tools/bench_pyramid.py ../shared/data/kodak --qualities 20,50,80 --json docs/results/bench_pyramid_kodak.json

In-process, after a warm-up, median of ``--repeats`` runs per image. For each quality it prints the mean
bpp and PSNR-RGB, the median encode and decode times, the decode's parts (entropy decoding with the
fixed-point context model; synthesis), and Pillow decoding a JPEG of about the same byte size of the same
image (the quality whose size is nearest), with the ratio of the two. The decoder's MAC per pixel and the
synthesis' achieved GMAC/s come from the model's own count.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cpu_info, image_paths, load_rgb, write_report  # noqa: E402

import tinycodec  # noqa: E402
from tinycodec import zoo  # noqa: E402
from tinycodec.pyramid import bitstream, codec, layout  # noqa: E402
from tinycodec.container_v2 import unpack  # noqa: E402
from tinycodec.pyramid.model import count_parameters, decoder_macs_per_pixel  # noqa: E402
from tinycodec.pyramid.weights import MODEL, load_decoder  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def summary_row(quality: int, per: list[dict], timings: tuple[str, ...], synth_gmacs: float) -> dict:
    """One quality's figures over the images: mean bpp and PSNR, median timings, the ratio to JPEG's decode."""
    return {"quality": quality, "bpp": statistics.mean(r["bpp"] for r in per),
            "psnr": statistics.mean(r["psnr"] for r in per),
            **{k: statistics.median(r[k] for r in per) for k in timings},
            "decode_vs_jpeg": statistics.median(r["decode_ms"] / r["jpeg_decode_ms"] for r in per),
            "synthesis_gmac_per_s": synth_gmacs, "images": per}


def jpeg_near(rgb: np.ndarray, size: int) -> bytes:
    best = None
    for q in range(5, 100, 5):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=q, optimize=True)
        if best is None or abs(len(buf.getvalue()) - size) < abs(len(best) - size):
            best = buf.getvalue()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--qualities", default="20,50,80")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    paths = image_paths(args.folder)[: args.limit]
    dec = load_decoder(zoo.current_entry(MODEL))
    macs = decoder_macs_per_pixel()
    rows = []
    warm = load_rgb(paths[0])
    tinycodec.decode(tinycodec.encode(warm, quality=50, family="pyramid"))
    for q in map(int, args.qualities.split(",")):
        per = []
        for p in paths:
            rgb = load_rgb(p)
            h, w = rgb.shape[:2]
            data = tinycodec.encode(rgb, quality=q, family="pyramid")
            t_enc = median_time(lambda: tinycodec.encode(rgb, quality=q, family="pyramid"), args.repeats)
            t_dec = median_time(lambda: tinycodec.decode(data), args.repeats)
            un = unpack(data)
            shapes = layout.grid_shapes(un.header.height, un.header.width)
            grids = bitstream.decode_grids(un.segments, shapes, q, dec.context, dec.coder)
            t_entropy = median_time(lambda: bitstream.decode_grids(un.segments, shapes, q, dec.context, dec.coder),
                                    args.repeats)
            t_synth = median_time(lambda: codec.synthesise(grids, dec, q, h, w), args.repeats)
            jpg = jpeg_near(rgb, len(data))
            t_jpeg = median_time(lambda: Image.open(io.BytesIO(jpg)).load(), max(args.repeats, 5))
            out = np.asarray(tinycodec.decode(data)).astype(np.float64)
            mse = np.mean((out - rgb) ** 2)
            per.append({"image": p.name, "bpp": 8 * len(data) / (h * w), "psnr": 10 * np.log10(255**2 / mse),
                        "encode_ms": 1e3 * t_enc, "decode_ms": 1e3 * t_dec, "entropy_ms": 1e3 * t_entropy,
                        "synthesis_ms": 1e3 * t_synth, "jpeg_bytes": len(jpg), "jpeg_decode_ms": 1e3 * t_jpeg,
                        "pixels": h * w})
        synth_gmacs = statistics.mean(r["pixels"] * macs["synthesis"] / (r["synthesis_ms"] / 1e3) / 1e9 for r in per)
        row = summary_row(q, per, ("encode_ms", "decode_ms", "entropy_ms", "synthesis_ms", "jpeg_decode_ms"),
                          synth_gmacs)
        rows.append(row)
        print(f"q{q:>3}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB | encode {row['encode_ms']:.0f} ms | decode "
              f"{row['decode_ms']:.0f} ms (entropy {row['entropy_ms']:.0f}, synthesis {row['synthesis_ms']:.0f}) | "
              f"Pillow JPEG of the same size {row['jpeg_decode_ms']:.1f} ms: decode {row['decode_vs_jpeg']:.1f}x | "
              f"synthesis {synth_gmacs:.2f} GMAC/s", flush=True)
    report = {"tool": "tools/bench_pyramid.py", "folder": str(args.folder), "threads": args.threads,
              "cpu": cpu_info(), "model": MODEL, "weights": zoo.current_entry(MODEL).short_id.hex(),
              "decoder_mac_per_pixel": macs, "decoder_parameters": count_parameters(dec.network),
              "rows": rows}
    print(f"decoder: {macs['total']:.0f} MAC/pixel ({', '.join(f'{k} {v:.0f}' for k, v in macs.items() if k != 'total')})")
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
