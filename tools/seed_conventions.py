#!/usr/bin/env python3
"""Which PSNR the seed reported: its JPEG figures against Pillow's JPEG on every Kodak image.

    python tools/seed_conventions.py ../shared/data/kodak --rd-csv docs/results/rd_per_image.csv \
        --json docs/results/seed_conventions.json

The seed (``shared/seeds/002_*``, "Comparison with JPEG") gives JPEG points on
Kodak images it does not name: 51.87 dB at 5.12 bpp, 39.89 dB at 1.06 bpp,
32.63 dB at 0.31 bpp, 25.76 dB at 0.16 bpp. For every Kodak image this sweeps
Pillow's JPEG (quality 1..100, 4:4:4 and 4:2:0) and prints the best PSNR-RGB
and PSNR-Y (BT.601 luma) any setting reaches at or below each of those rates.
If no image reaches a seed figure on RGB but some do on Y, the seed's PSNR
is luma PSNR, and issue 2's PSNR targets (39.7 / 31.9 / 28.6 dB) are too.

With ``--rd-csv`` (the per-image CSV of a ``tinycodec rd`` run) it then lists
tinycodec's per-image 8-plane figures on the images whose JPEG curve lies
closest to the seed's JPEG points on Y, beside the seed's example-image
figures: what "the seed's example image" would mean if it were one of them.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import write_report  # noqa: E402
from tinycodec import rd  # noqa: E402
from tinycodec.rd import list_images, load_rgb, psnr, psnr_y  # noqa: E402

# (bpp, PSNR dB) of the seed's JPEG comparisons, and of its TinyCompress example image per rd setting (8 planes).
SEED_JPEG = tuple((bpp, db) for bpp, db, _ in rd.SEED_JPEG.values())
SEED_EXAMPLE = {setting: rd.SEED_TINYCOMPRESS[name][:2] for setting, name in
                (("s4p8", "TC-4"), ("s16p8", "TC-16"), ("s64p8", "TC-64"))}
QUALITIES = (1, 2, 3, 4, *range(5, 100, 3), 100)


def jpeg_points(rgb: np.ndarray) -> list[tuple[float, float, float]]:
    """(bpp, PSNR-RGB, PSNR-Y) of Pillow's JPEG at every quality and both chroma subsamplings."""
    image, pixels = Image.fromarray(rgb), rgb.shape[0] * rgb.shape[1]
    points = []
    for quality in QUALITIES:
        for subsampling in (0, 2):  # 4:4:4, 4:2:0
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality, subsampling=subsampling)
            out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
            points.append((8 * buffer.tell() / pixels, psnr(rgb, out), psnr_y(rgb, out)))
    return points


def best_at(points: list[tuple[float, float, float]], rate: float, column: int) -> float | None:
    """The highest PSNR among points at or below ``rate`` bpp (None: no setting is that small)."""
    reachable = [p[column] for p in points if p[0] <= rate]
    return max(reachable) if reachable else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kodak_dir")
    parser.add_argument("--rd-csv", type=Path, default=None, help="per-image CSV of a `tinycodec rd` run")
    parser.add_argument("--closest", type=int, default=4, help="how many closest images to list")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    report: dict = {"seed_jpeg": SEED_JPEG, "images": {}}
    print("best Pillow JPEG PSNR at or below the seed's JPEG rates (RGB / Y, dB)")
    print(f"{'image':12}" + "".join(f"  {f'{r:.3f} bpp ({q:.2f})':>22}" for r, q in SEED_JPEG) + "  Y misfit dB")
    for path in list_images(args.kodak_dir):
        points = jpeg_points(load_rgb(path))
        rgb_best = [best_at(points, r, 1) for r, _ in SEED_JPEG]
        y_best = [best_at(points, r, 2) for r, _ in SEED_JPEG]
        gaps = [y - q for y, (_, q) in zip(y_best, SEED_JPEG) if y is not None]
        misfit = float(np.sqrt(np.mean(np.square(gaps)))) if gaps else None
        report["images"][path.name] = {"rgb": rgb_best, "y": y_best, "y_misfit_db": misfit}
        cells = "".join(f"  {_fmt(a):>10} / {_fmt(b):>9}" for a, b in zip(rgb_best, y_best))
        print(f"{path.name:12}{cells}  {_fmt(misfit)}", flush=True)

    images = report["images"]
    print("\nhighest over all images (RGB / Y) against the seed's JPEG figure:")
    for i, (rate, quality) in enumerate(SEED_JPEG):
        top_rgb = max((v["rgb"][i] for v in images.values() if v["rgb"][i] is not None), default=None)
        top_y = max((v["y"][i] for v in images.values() if v["y"][i] is not None), default=None)
        print(f"  {rate:.4f} bpp: seed {quality:.2f} dB; Pillow RGB {_fmt(top_rgb)}, Y {_fmt(top_y)}")
    ranked = sorted((v["y_misfit_db"], k) for k, v in images.items() if v["y_misfit_db"] is not None)
    report["closest_on_y"] = [k for _, k in ranked[: args.closest]]
    print("closest to the seed's JPEG points on Y (RMS dB): "
          + ", ".join(f"{k} {m:.2f}" for m, k in ranked[: args.closest]))

    if args.rd_csv:
        with open(args.rd_csv, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["codec"] == "tinycodec" and r["setting"] in SEED_EXAMPLE]
        print("\ntinycodec per image (bpp / PSNR-RGB / PSNR-Y) against the seed's example image (bpp / PSNR):")
        print(f"{'image':12}" + "".join(f"  {s:>24}" for s in SEED_EXAMPLE))
        print(f"{'seed':12}" + "".join(f"  {f'{b:.3f} / {q:.2f}':>24}" for b, q in SEED_EXAMPLE.values()))
        report["tinycodec"] = {}
        for name in report["closest_on_y"]:
            by = {r["setting"]: r for r in rows if r["image"] == name}
            if not by:
                continue
            cells = {s: (float(by[s]["bpp"]), float(by[s]["psnr_rgb"]), float(by[s]["psnr_y"])) for s in SEED_EXAMPLE
                     if s in by}
            report["tinycodec"][name] = cells
            print(f"{name:12}" + "".join(f"  {'%.3f / %.2f / %.2f' % cells[s]:>24}" if s in cells else f"  {'':>24}"
                                         for s in SEED_EXAMPLE))
    if args.json:
        write_report(args.json, report)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
