"""File sizes with each entropy coder, same weights and latents: what a coder change buys.

    python tools/compare_coders.py ../shared/data/kodak --json docs/results/coders_kodak.json

Encodes every image at every scale level with 8 and 5 planes (--planes) once per coder (the encoder writes
``entropy.coder_for``: coder 4, or coder 3 where coder 4 does not pay; this tool sets ``entropy.CODER_ID``
and measures every coder at every point) and prints mean bpp per coder. The coders are lossless and
see the same symbols, so the decoded images are identical; only the bytes differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tinycodec  # noqa: E402
from _data import image_paths, load_rgb, write_report  # noqa: E402
from tinycodec import entropy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="folder of images (Kodak)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--planes", default="8,5")
    args = ap.parse_args()
    images = [load_rgb(p) for p in image_paths(args.data)]
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    written_by_default = entropy.CODER_ID
    few_planes = entropy.FEW_PLANES
    entropy.FEW_PLANES = {}  # each coder at every operating point, also where the encoder would pick coder 3
    results = []
    try:
        for scale in (4, 16, 64, 256):
            for planes in map(int, args.planes.split(",")):
                row = {"scale": scale, "planes": planes}
                for coder in sorted(entropy.CODERS):
                    entropy.CODER_ID = coder
                    size = sum(len(tinycodec.encode(im, scale=scale, planes=planes)) for im in images)
                    row[f"bpp_coder{coder}"] = 8 * size / pixels
                row["change_vs_coder1"] = row[f"bpp_coder{written_by_default}"] / row["bpp_coder1"] - 1
                # The default coder against the progressive one (tcenc --progressive), the bound of issue 30.
                progressive = entropy.PROGRESSIVE_CODER_ID
                row[f"change_vs_coder{progressive}"] = (row[f"bpp_coder{written_by_default}"]
                                                        / row[f"bpp_coder{progressive}"] - 1)
                # What the encoder writes by default at this point (entropy.coder_for).
                entropy.CODER_ID, entropy.FEW_PLANES = written_by_default, few_planes
                row["default_coder"] = entropy.coder_for(scale, planes)
                entropy.FEW_PLANES = {}
                results.append(row)
                line = "  ".join(f"coder {c} {row[f'bpp_coder{c}']:.4f}" for c in sorted(entropy.CODERS))
                print(f"scale {scale:3d} planes {planes}: {line} bpp (coder {written_by_default}: "
                      f"{100 * row['change_vs_coder1']:+.2f}% vs coder 1, "
                      f"{100 * row[f'change_vs_coder{progressive}']:+.2f}% vs coder {progressive})", flush=True)
    finally:
        entropy.CODER_ID, entropy.FEW_PLANES = written_by_default, few_planes
    if args.json:
        meta = {"command": " ".join(["python", *sys.argv]), "images": len(images), "default_coder": written_by_default}
        write_report(args.json, {"meta": meta, "results": results})


if __name__ == "__main__":
    main()
