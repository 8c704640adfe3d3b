"""Time the shallow family per image: encode (fast), decode, and its parts, against Pillow's JPEG in the same run.

    python tools/bench_shallow.py ../shared/data/kodak --qualities 20,50,80 --json docs/results/bench_shallow_kodak.json

In-process, after a warm-up, median of ``--repeats`` runs per image. For each quality: the mean bpp and
PSNR-RGB, the median encode and decode times, the decode's parts (entropy decoding, which includes the
integer hyper-synthesis; that hyper-synthesis alone; the numpy synthesis), and Pillow decoding a JPEG of about
the same byte size of the same image, with the ratio of the two. MAC per pixel from the model's own count.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import cpu_info, image_paths, load_rgb, write_report  # noqa: E402
from bench_pyramid import jpeg_near, median_time, summary_row  # noqa: E402

import tinycodec  # noqa: E402
from tinycodec import zoo  # noqa: E402
from tinycodec.container_v2 import unpack  # noqa: E402
from tinycodec.shallow import bitstream, fixedpoint, layout, synthesis  # noqa: E402
from tinycodec.shallow.model import decoder_macs_per_pixel  # noqa: E402
from tinycodec.shallow.weights import MODEL, load_decoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--qualities", default="20,50,80")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (the encoder)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    paths = image_paths(args.folder)[: args.limit]
    dec = load_decoder(zoo.current_entry(MODEL))
    macs = decoder_macs_per_pixel(dec.arch)
    warm = load_rgb(paths[0])
    tinycodec.decode(tinycodec.encode(warm, quality=50))
    rows = []
    for q in map(int, args.qualities.split(",")):
        per = []
        for p in paths:
            rgb = load_rgb(p)
            h, w = rgb.shape[:2]
            data = tinycodec.encode(rgb, quality=q)
            t_enc = median_time(lambda: tinycodec.encode(rgb, quality=q), args.repeats)
            t_dec = median_time(lambda: tinycodec.decode(data), args.repeats)
            un = unpack(data)
            zs, ys = layout.hyper_shape(h, w, dec.arch), layout.latent_shape(h, w, dec.arch)
            kz, k, _ = bitstream.decode_latents(un.segments, zs, ys, q, dec.hyper, dec.coder)
            t_entropy = median_time(lambda: bitstream.decode_latents(un.segments, zs, ys, q, dec.hyper, dec.coder),
                                    args.repeats)
            t_hyper = median_time(lambda: fixedpoint.entropy_parameters(dec.hyper, kz, q), args.repeats)
            t_synth = median_time(lambda: synthesis.synthesise(k, dec.synthesis, q, h, w), args.repeats)
            jpg = jpeg_near(rgb, len(data))
            t_jpeg = median_time(lambda: Image.open(io.BytesIO(jpg)).load(), max(args.repeats, 5))
            out = np.asarray(tinycodec.decode(data)).astype(np.float64)
            mse = np.mean((out - rgb) ** 2)
            per.append({"image": p.name, "bpp": 8 * len(data) / (h * w), "psnr": 10 * np.log10(255**2 / mse),
                        "encode_ms": 1e3 * t_enc, "decode_ms": 1e3 * t_dec, "entropy_ms": 1e3 * t_entropy,
                        "hyper_ms": 1e3 * t_hyper, "synthesis_ms": 1e3 * t_synth, "jpeg_bytes": len(jpg),
                        "jpeg_decode_ms": 1e3 * t_jpeg, "pixels": h * w})
        synth_gmacs = statistics.mean(r["pixels"] * macs["synthesis"] / (r["synthesis_ms"] / 1e3) / 1e9 for r in per)
        row = summary_row(q, per, ("encode_ms", "decode_ms", "entropy_ms", "hyper_ms", "synthesis_ms", "jpeg_decode_ms"),
                          synth_gmacs)
        rows.append(row)
        print(f"q{q:>3}: {row['bpp']:.3f} bpp {row['psnr']:.2f} dB | encode {row['encode_ms']:.0f} ms | decode "
              f"{row['decode_ms']:.0f} ms (entropy {row['entropy_ms']:.0f} incl. hyper {row['hyper_ms']:.0f}, "
              f"synthesis {row['synthesis_ms']:.0f}) | Pillow JPEG of the same size {row['jpeg_decode_ms']:.1f} ms: "
              f"decode {row['decode_vs_jpeg']:.1f}x | synthesis {synth_gmacs:.2f} GMAC/s", flush=True)
    print(f"decoder: {macs['total']:.0f} MAC/pixel ({', '.join(f'{k} {v:.0f}' for k, v in macs.items() if k != 'total')})")
    if args.json:
        write_report(args.json, {"tool": "tools/bench_shallow.py", "folder": str(args.folder), "threads": args.threads,
                                 "cpu": cpu_info(), "model": MODEL, "weights": zoo.current_entry(MODEL).short_id.hex(),
                                 "decoder_mac_per_pixel": macs, "rows": rows})


if __name__ == "__main__":
    main()
