#!/usr/bin/env python3
"""Progressive decoding: PSNR against the bytes received, on a folder of images.

    python tools/bench_progressive.py ../shared/data/kodak --scale 16 --json /tmp/progressive.json

Every image is encoded once, then the file is cut after 10%, 20%, ... 100% of
its bytes (a partial download) and decoded with ``partial=True``: the
decoder uses every bit-plane segment that arrived whole. Printed per cut:
mean bytes, mean planes decoded (tiles that also have the next plane count
as the fraction of tiles they are), mean PSNR-RGB over the images that
decode at all, and how many do (before the first plane is complete nothing
can be shown). For comparison the same is done with a progressive JPEG
(Pillow, ``progressive=True, optimize=True``) of about the same size (the
quality whose file is closest to the .tcz), decoded from the same fraction
of its bytes with Pillow's ``LOAD_TRUNCATED_IMAGES``: progressive JPEG's
scans are the classic form of this feature.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinycodec  # noqa: E402
from _data import write_report  # noqa: E402
from tinycodec.container import group_ends  # noqa: E402
from tinycodec.rd import list_images, load_rgb, psnr  # noqa: E402


def cut_quality(data: bytes, fraction: float, reference: np.ndarray) -> tuple[float | None, float]:
    """PSNR of the .tcz cut to ``fraction`` of its bytes (None if nothing decodes) and planes decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image, info = tinycodec.decode_with_info(data[: int(len(data) * fraction)], partial=True)
        except tinycodec.TinyCodecError:
            return None, 0.0
    return psnr(reference, np.asarray(image.convert("RGB"))), info.planes_decoded + info.tiles_refined / info.tiles


def progressive_jpeg(rgb: np.ndarray, target_bytes: int) -> bytes:
    """The progressive JPEG whose size is closest to ``target_bytes`` (bisection on quality 1..95)."""
    image = Image.fromarray(rgb)

    def encode(quality: int) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality, progressive=True, optimize=True)
        return buf.getvalue()

    lo, hi = 1, 95
    while lo < hi:
        mid = (lo + hi) // 2
        if len(encode(mid)) < target_bytes:
            lo = mid + 1
        else:
            hi = mid
    candidates = [encode(q) for q in {max(1, lo - 1), lo}]
    return min(candidates, key=lambda d: abs(len(d) - target_bytes))


def jpeg_cut_quality(data: bytes, fraction: float, reference: np.ndarray) -> float | None:
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(data[: int(len(data) * fraction)])) as im:
            im.load()
            out = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    return psnr(reference, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder of images (Kodak: ../shared/data/kodak)")
    parser.add_argument("--scale", type=int, default=16, choices=tinycodec.SCALES)
    parser.add_argument("--planes", type=int, default=8)
    parser.add_argument("--fractions", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
                        help="comma-separated fractions of the file's bytes")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--no-jpeg", action="store_true", help="skip the progressive JPEG comparison")
    parser.add_argument("--json", type=Path, default=None, help="also write the table and per-image data here")
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]

    rows: dict[float, dict[str, list]] = {f: {"bytes": [], "planes": [], "psnr": [], "jpeg": []} for f in fractions}
    plane_fractions = []  # per image: fraction of the file needed for 1..P planes
    per_image = []
    images = list_images(args.data_dir, args.limit)
    for path in images:
        rgb = load_rgb(path)
        data = tinycodec.encode(rgb, scale=args.scale, planes=args.planes, progressive=True)
        plane_fractions.append([end / len(data) for end in group_ends(data)])
        jpeg = None if args.no_jpeg else progressive_jpeg(rgb, len(data))
        record = {"image": path.name, "tcz_bytes": len(data), "jpeg_bytes": len(jpeg) if jpeg else None, "cuts": []}
        for f in fractions:
            quality, planes = cut_quality(data, f, rgb)
            jpeg_quality = None if jpeg is None else jpeg_cut_quality(jpeg, f, rgb)
            row = rows[f]
            row["bytes"].append(int(len(data) * f))
            row["planes"].append(planes)
            if quality is not None:
                row["psnr"].append(quality)
            if jpeg_quality is not None:
                row["jpeg"].append(jpeg_quality)
            record["cuts"].append({"fraction": f, "psnr": quality, "planes": planes, "jpeg_psnr": jpeg_quality})
        per_image.append(record)
        print(f"{path.name}: {len(data)} bytes", file=sys.stderr)

    n = len(images)
    print(f"\n{n} images, scale {args.scale}, {args.planes} planes; mean file "
          f"{np.mean([r['tcz_bytes'] for r in per_image]):.0f} bytes; plane m complete after "
          + ", ".join(f"{100 * np.mean([p[m] for p in plane_fractions]):.0f}%" for m in range(args.planes))
          + " of the bytes (means)")
    print(f"{'bytes %':>7} {'bytes':>8} {'planes':>6} {'PSNR dB':>8} {'decoded':>7}"
          + ("" if args.no_jpeg else f" {'prog. JPEG dB':>13} {'decoded':>7}"))
    table = []
    for f in fractions:
        row = rows[f]
        entry = {
            "fraction": f, "mean_bytes": float(np.mean(row["bytes"])), "mean_planes": float(np.mean(row["planes"])),
            "psnr": float(np.mean(row["psnr"])) if row["psnr"] else None, "decoded": len(row["psnr"]),
            "jpeg_psnr": float(np.mean(row["jpeg"])) if row["jpeg"] else None, "jpeg_decoded": len(row["jpeg"]),
        }
        table.append(entry)

        def db(v):
            return f"{v:8.2f}" if v is not None else f"{'-':>8}"

        line = (f"{100 * f:>6.0f}% {entry['mean_bytes']:>8.0f} {entry['mean_planes']:>6.2f} {db(entry['psnr'])} "
                f"{entry['decoded']:>4}/{n:<2}")
        if not args.no_jpeg:
            line += f" {db(entry['jpeg_psnr']):>13} {entry['jpeg_decoded']:>4}/{n:<2}"
        print(line)
    if args.json:
        write_report(args.json, {"scale": args.scale, "planes": args.planes, "images": n, "table": table,
                                 "per_image": per_image})


if __name__ == "__main__":
    main()
