#!/usr/bin/env python3
"""What tiling costs: tiled against untiled coding, on a folder of images.

    python tools/bench_tiling.py ../shared/data/kodak --limit 4
    python tools/bench_tiling.py ../shared/data/kodak --limit 1 --scales 4,16,64,256 --json /tmp/tiling.json

"Untiled" runs each network over the whole image at once and entropy-codes
the latent as one tile. "Tiled" uses the given network window (pixels per
side, halo excluded) and entropy tile (latent elements per side) in both
encoder and decoder; the default stress setting, 64-pixel windows and
16-element tiles, puts a window border every 64 pixels, far more than a
real image gets (512 and 256). Printed per image and scale: PSNR-RGB of
both against the original, their difference, the largest pixel difference
between the two decoded images, how many latent symbols differ (float
rounding in the convolutions can move a value across a rounding boundary)
and the file sizes (small tiles cost bytes: each starts its statistics afresh).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinycodec  # noqa: E402
from _data import write_report  # noqa: E402
from tinycodec import entropy  # noqa: E402
from tinycodec.container import unpack  # noqa: E402
from tinycodec.rd import list_images, load_rgb, psnr  # noqa: E402

WHOLE = 1 << 20  # a window larger than any image: the network runs once over all of it


def latent_symbols(data: bytes) -> np.ndarray:
    """The decoded latent symbols of a file, assembled from its tiles."""
    unpacked = unpack(data)
    header = unpacked.header
    lh, lw = header.latent_size
    out = np.empty((3, lh, lw), np.uint8)
    rows, cols = header.tiles
    t = header.tile
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        view = out[:, r * t : (r + 1) * t, c * t : (c + 1) * t]
        # The colour groups (one per plane for coders 1-3, one for all planes for coder 4), not alpha's.
        segments = [g[index] for g in unpacked.groups[: len(header.colour_groups)]]
        view[...] = entropy.decode_tile(segments, header.planes, view.shape, coder_id=header.coder_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--scales", default="4,16", help="comma-separated scale levels")
    parser.add_argument("--window", type=int, default=64, help="network window of the tiled run, pixels")
    parser.add_argument("--tile", type=int, default=16, help="entropy tile of the tiled run, latent elements")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-image, per-scale rows here")
    args = parser.parse_args()
    print(f"tiled: {args.window}-pixel network windows, {args.tile}-element entropy tiles; untiled: one of each")
    print(f"{'image':<12} {'scale':>5} {'untiled dB':>10} {'tiled dB':>9} {'loss dB':>8} {'max |diff|':>10} "
          f"{'symbols differing':>17} {'bytes untiled':>13} {'bytes tiled':>11}")
    losses = []
    rows = []
    for path in list_images(args.data_dir, args.limit):
        rgb = load_rgb(path)
        for scale in (int(s) for s in args.scales.split(",")):
            untiled = tinycodec.encode(rgb, scale=scale, tile=0xFFFF, window=WHOLE)
            tiled = tinycodec.encode(rgb, scale=scale, tile=args.tile, window=args.window)
            out_untiled = np.asarray(tinycodec.decode(untiled, window=WHOLE))
            out_tiled = np.asarray(tinycodec.decode(tiled, window=args.window))
            p_untiled, p_tiled = psnr(rgb, out_untiled), psnr(rgb, out_tiled)
            losses.append(p_untiled - p_tiled)
            differing = int(np.count_nonzero(latent_symbols(untiled) != latent_symbols(tiled)))
            max_diff = int(np.abs(out_untiled.astype(int) - out_tiled).max())
            n_symbols = latent_symbols(untiled).size
            rows.append({"image": path.name, "scale": scale, "psnr_untiled": p_untiled, "psnr_tiled": p_tiled,
                         "loss_db": p_untiled - p_tiled, "max_abs_pixel_diff": max_diff,
                         "symbols_differing": differing, "symbols": n_symbols,
                         "bytes_untiled": len(untiled), "bytes_tiled": len(tiled)})
            print(f"{path.name:<12} {scale:>5} {p_untiled:>10.4f} {p_tiled:>9.4f} {p_untiled - p_tiled:>8.4f} "
                  f"{max_diff:>10} {differing:>8} of {n_symbols:<7} {len(untiled):>13} {len(tiled):>11}")
    print(f"PSNR loss of tiled coding: mean {np.mean(losses):.4f} dB, largest {max(losses):.4f} dB")
    if args.json:
        write_report(args.json, {"window": args.window, "tile": args.tile, "rows": rows,
                                 "mean_loss_db": float(np.mean(losses)), "max_loss_db": float(max(losses))})


if __name__ == "__main__":
    main()
