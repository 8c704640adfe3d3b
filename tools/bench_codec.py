#!/usr/bin/env python3
"""Rate, quality and speed of tinycodec at every scale x planes on a folder of images.

    python tools/bench_codec.py ../shared/data/kodak --json docs/results/bench_codec_kodak.json

Prints one row per operating point: mean bpp (whole .tcz file), the entropy
coder's saving against the raw kept bits, PSNR on RGB (mean of per-image
values, CompressAI's convention) and on Y (BT.601, as the seed reported it),
MS-SSIM, median encode/decode milliseconds per image (in-process, after one
warm-up image) and, per scale, the peak resident memory of a fresh process
that encodes and decodes the first image (imports and weights included).

After the table, per scale: the median milliseconds of the encoder and decoder
networks alone (the same windows the codec runs, float latent in, uint8 out),
so that the rest of a row's time, quantising, entropy coding and the container,
can be read off. The seed's CPU table times "encoding and decoding only", which reads as
these network times.

Last, the two decode ratios of issue 30, from the same run: the whole decode at TC-16, 8 planes,
against Pillow's decode of a JPEG of the same image at the quality whose size is nearest the .tcz
file's (median ms over the images, each JPEG decoded DECODE_REPEATS times, its median taken), and the
whole decode at TC-4, 8 planes, against the decoder network alone.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinycodec  # noqa: E402
from _data import cpu_info, describe_cpu, write_report  # noqa: E402
from tinycodec.rd import list_images, load_rgb, ms_ssim_rgb, psnr, psnr_y  # noqa: E402  (as `tinycodec rd`)
from tinycodec import entropy, tiling  # noqa: E402
from tinycodec.container import read_header  # noqa: E402
from tinycodec.models import SCALE_DEPTHS  # noqa: E402
from tinycodec.zoo import current_entry, model_name  # noqa: E402


# A fresh interpreter per scale: in one process the resident set only grows (the allocators keep
# what they freed), so an in-process peak is a running maximum over everything measured before it.
PEAK_CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[3])
import tinycodec
from tinycodec.rd import load_rgb
image = load_rgb(sys.argv[1])
tinycodec.decode(tinycodec.encode(image, scale=int(sys.argv[2])))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # kB on Linux
"""


def peak_memory_mb(path: Path, scale: int) -> float:
    """Peak resident memory (MB) of a fresh process that encodes and decodes one image at 8 planes."""
    out = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(path), str(scale), str(ROOT)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def network_ms(images: list[np.ndarray], scale: int) -> tuple[float, float]:
    """Median ms per image of the encoder and of the decoder network alone, as the codec runs them."""
    entry, depth = current_entry(model_name(scale)), SCALE_DEPTHS[scale]
    encode_ms, decode_ms = [], []
    for rgb in images:
        t0 = time.perf_counter()
        latent = tiling.encode_latent(entry, scale, depth, rgb)
        t1 = time.perf_counter()
        for _ in tiling.decode_windows(entry, scale, depth, lambda r, c: latent[:, r[0] : r[1], c[0] : c[1]],
                                       latent.shape[1:]):
            pass
        t2 = time.perf_counter()
        encode_ms.append((t1 - t0) * 1000)
        decode_ms.append((t2 - t1) * 1000)
    return statistics.median(encode_ms), statistics.median(decode_ms)


DECODE_REPEATS = 5


def jpeg_like(rgb: np.ndarray, size: int) -> bytes:
    """Pillow's JPEG of ``rgb`` (default 4:2:0) at the quality 1..95 whose byte size is nearest ``size``."""
    def encode(quality: int) -> bytes:
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
        return out.getvalue()

    lo, hi = 1, 95  # sizes grow with quality: bisect for the first quality at or above the target
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if len(encode(mid)) < size else (lo, mid)
    candidates = [encode(q) for q in {max(lo - 1, 1), lo}]
    return min(candidates, key=lambda data: abs(len(data) - size))


def jpeg_decode_ms(data: bytes) -> float:
    """Median ms of Pillow decoding ``data`` to an array, as the benchmark times tinycodec.decode."""
    times = []
    for _ in range(DECODE_REPEATS):
        t0 = time.perf_counter()
        np.asarray(Image.open(io.BytesIO(data)))  # the JPEG is RGB: decoded as is
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def decode_ratios(rows: list[dict], networks: list[dict], images: list[np.ndarray]) -> dict:
    """Issue 30's ratios: TC-16 (8 planes) whole decode / JPEG decode, TC-4 (8 planes) decode / networks alone."""
    out = {}
    by_point = {(r["scale"], r["planes"]): r for r in rows}
    tc16 = by_point.get((16, 8))
    if tc16 is not None:
        jpeg_ms, jpeg_bytes = [], []
        for per, rgb in zip(tc16["images"], images):
            data = jpeg_like(rgb, per["bytes"])
            jpeg_bytes.append(len(data))
            jpeg_ms.append(jpeg_decode_ms(data))
        decode_ms = statistics.median(p["decode_ms"] for p in tc16["images"])
        out["tc16_vs_jpeg"] = {
            "tcz_decode_ms": decode_ms, "jpeg_decode_ms": statistics.median(jpeg_ms),
            "ratio": decode_ms / statistics.median(jpeg_ms),
            "tcz_bytes_mean": float(np.mean([p["bytes"] for p in tc16["images"]])),
            "jpeg_bytes_mean": float(np.mean(jpeg_bytes)), "jpeg_ms": jpeg_ms}
        print(f"TC-16, 8 planes: decode {decode_ms:.1f} ms, Pillow JPEG of about the same size "
              f"({out['tc16_vs_jpeg']['jpeg_bytes_mean']:.0f} vs {out['tc16_vs_jpeg']['tcz_bytes_mean']:.0f} bytes, "
              f"mean) {statistics.median(jpeg_ms):.2f} ms: {out['tc16_vs_jpeg']['ratio']:.1f}x")
    tc4, net4 = by_point.get((4, 8)), next((n for n in networks if n["scale"] == 4), None)
    if tc4 is not None and net4 is not None:
        out["tc4_vs_networks"] = {"tcz_decode_ms": tc4["decode_ms"], "network_decode_ms": net4["decode_ms"],
                                  "ratio": tc4["decode_ms"] / net4["decode_ms"]}
        print(f"TC-4, 8 planes: decode {tc4['decode_ms']:.1f} ms, decoder network alone {net4['decode_ms']:.1f} ms: "
              f"{out['tc4_vs_networks']['ratio']:.2f}x")
    return out


def print_bicubic_baseline(images: list[np.ndarray], scales: list[int]) -> None:
    """Mean PSNR-RGB of resampling alone: the latent size of each scale level, no coding at all."""
    print(f"{'scale':>5} {'factor':>6} {'PSNR':>6}")
    for scale in scales:
        factor = int(round(scale**0.5))
        values = []
        for ref in images:
            h, w = ref.shape[:2]
            small = Image.fromarray(ref).resize((w // factor, h // factor), Image.BICUBIC)
            values.append(psnr(ref, np.asarray(small.resize((w, h), Image.BICUBIC))))
        print(f"{scale:>5} {factor:>6} {np.mean(values):>6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of test images (e.g. ../shared/data/kodak)")
    ap.add_argument("--scales", type=int, nargs="+", default=list(tinycodec.SCALES))
    ap.add_argument("--planes", type=int, nargs="+", default=list(range(8, 0, -1)))
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    ap.add_argument("--bicubic", action="store_true",
                    help="only print the baseline: Pillow bicubic down- and up-sampling at each scale's factor")
    args = ap.parse_args()

    try:
        paths = list_images(args.data, args.limit)
        images = [load_rgb(p) for p in paths]
    except tinycodec.TinyCodecError as exc:
        raise SystemExit(f"bench_codec: error: {exc}") from None
    if args.bicubic:
        print_bicubic_baseline(images, args.scales)
        return
    tinycodec.decode(tinycodec.encode(images[0], scale=args.scales[0]))  # warm-up: weights, allocator
    cpu = cpu_info()

    print(f"{len(images)} images from {args.data}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{describe_cpu(cpu)}")
    header = (f"{'scale':>5} {'planes':>6} {'bpp':>7} {'saving':>7} {'PSNR':>6} {'PSNR-Y':>6} {'MS-SSIM':>7} "
              f"{'enc ms':>7} {'dec ms':>7} {'peak MB':>7}")
    print(header)
    rows, networks = [], []
    for scale in args.scales:
        peak_mb = peak_memory_mb(paths[0], scale)
        for planes in args.planes:
            per_image = []
            for path, ref in zip(paths, images):
                t0 = time.perf_counter()
                data = tinycodec.encode(ref, scale=scale, planes=planes)
                t1 = time.perf_counter()
                out = np.asarray(tinycodec.decode(data))
                t2 = time.perf_counter()
                hdr, table, header_len = read_header(data)
                lh, lw = hdr.latent_size
                raw_bits = 3 * lh * lw * planes
                payload_bits = 8 * (len(data) - header_len)
                per_image.append({
                    "image": path.name,
                    "bytes": len(data),
                    "bpp": 8 * len(data) / (ref.shape[0] * ref.shape[1]),
                    "coder_saving": 1 - payload_bits / raw_bits,
                    "psnr_rgb": psnr(ref, out),
                    "psnr_y": psnr_y(ref, out),
                    "ms_ssim": ms_ssim_rgb(ref, out),
                    "encode_ms": (t1 - t0) * 1000,
                    "decode_ms": (t2 - t1) * 1000,
                })
            row = {"scale": scale, "planes": planes, "peak_rss_mb": peak_mb}
            for key in ("bpp", "coder_saving", "psnr_rgb", "psnr_y", "ms_ssim"):
                row[key] = float(np.mean([r[key] for r in per_image]))
            for key in ("encode_ms", "decode_ms"):
                row[key] = statistics.median(r[key] for r in per_image)
            row["images"] = per_image
            rows.append(row)
            print(f"{scale:>5} {planes:>6} {row['bpp']:>7.4f} {100 * row['coder_saving']:>6.1f}% "
                  f"{row['psnr_rgb']:>6.2f} {row['psnr_y']:>6.2f} {row['ms_ssim']:>7.4f} "
                  f"{row['encode_ms']:>7.1f} {row['decode_ms']:>7.1f} {row['peak_rss_mb']:>7.0f}", flush=True)
        net_encode_ms, net_decode_ms = network_ms(images, scale)  # after the rows: this scale's networks are warm
        networks.append({"scale": scale, "encode_ms": net_encode_ms, "decode_ms": net_decode_ms})
    print("networks alone, median ms per image (the rest of a row's time: quantising, entropy coding, container):")
    for net in networks:
        print(f"{net['scale']:>5}   encoder {net['encode_ms']:>6.1f}   decoder {net['decode_ms']:>6.1f}")
    ratios = decode_ratios(rows, networks, images)
    if args.json:
        meta = {"data": str(args.data), "images": len(images), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "tinycodec": tinycodec.__version__, "coder": entropy.CODER_ID, "machine": platform.machine(), "cpu": cpu}
        write_report(args.json, {"meta": meta, "results": rows, "networks": networks, "decode_ratios": ratios})


if __name__ == "__main__":
    main()
