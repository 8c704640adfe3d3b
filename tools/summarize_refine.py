#!/usr/bin/env python3
"""Plain against refined tinycodec, per setting, from the per-image CSV of a `tinycodec rd` run with both.

    tinycodec rd ../shared/data/kodak --codecs jpeg,tinycodec,tinycodec-refined --jobs 2 --out /tmp/rd
    python tools/summarize_refine.py /tmp/rd/rd_per_image.csv

Prints, for every setting the refined curve has: means of the per-image bpp, PSNR-RGB and MS-SSIM,
the median encode milliseconds, and the change in bits and dB.
"""

from __future__ import annotations

import collections
import csv
import statistics
import sys


def main(path: str) -> None:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["codec"] in ("tinycodec", "tinycodec-refined")]
    by = collections.defaultdict(list)
    for r in rows:
        by[r["codec"], r["setting"]].append(r)
    settings = sorted({s for c, s in by if c == "tinycodec-refined"},
                      key=lambda s: (int(s[1:].split("p")[0]), -int(s.split("p")[1])))

    def mean(rs, key):
        return statistics.mean(float(r[key]) for r in rs)

    def median(rs, key):
        return statistics.median(float(r[key]) for r in rs)

    print(f"{'setting':8} {'plain bpp':>9} {'dB':>6} {'msssim':>7} {'enc ms':>7} | {'refined bpp':>11} {'dB':>6} "
          f"{'msssim':>7} {'enc ms':>7} | d bits  d dB")
    for s in settings:
        a, b = by["tinycodec", s], by["tinycodec-refined", s]
        if not a:
            continue
        print(f"{s:8} {mean(a, 'bpp'):9.4f} {mean(a, 'psnr_rgb'):6.2f} {mean(a, 'ms_ssim'):7.4f} "
              f"{median(a, 'encode_ms'):7.0f} | {mean(b, 'bpp'):11.4f} {mean(b, 'psnr_rgb'):6.2f} "
              f"{mean(b, 'ms_ssim'):7.4f} {median(b, 'encode_ms'):7.0f} | "
              f"{100 * (mean(b, 'bpp') / mean(a, 'bpp') - 1):+5.1f}% {mean(b, 'psnr_rgb') - mean(a, 'psnr_rgb'):+.2f}"
              f"  (n={len(b)})")


if __name__ == "__main__":
    main(sys.argv[1])
