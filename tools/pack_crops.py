"""Pack random crops of a training folder into one compressed .npz, to carry to a GPU machine.

    python tools/pack_crops.py ../shared/data/train runs/train_crops.npz --crop 256 --max-mb 60

The device machine takes at most 64 MiB of files per call, and the training folder is larger. Crops are drawn
from every image in proportion to its area (as the trainer draws them), with a fixed seed, until the
compressed file would exceed ``--max-mb``. ``tools/train_pyramid.py`` accepts the .npz in place of a folder
(its random crops are then taken inside these crops).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import image_paths, load_rgb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("out", type=Path)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--max-mb", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    images = [load_rgb(p) for p in image_paths(args.folder)]
    areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
    rng = np.random.default_rng(args.seed)
    crops: list[np.ndarray] = []
    size = 0
    while True:
        batch = []
        for i in rng.choice(len(images), size=64, p=areas / areas.sum()):
            im = images[i]
            y = rng.integers(0, im.shape[0] - args.crop + 1)
            x = rng.integers(0, im.shape[1] - args.crop + 1)
            batch.append(im[y : y + args.crop, x : x + args.crop])
        buf = io.BytesIO()  # compressed sizes add up closely enough batch by batch
        np.savez_compressed(buf, crops=np.stack(batch))
        if size + buf.tell() > args.max_mb * 2**20:
            break
        crops += batch
        size += buf.tell()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, crops=np.stack(crops))
    print(f"wrote {args.out}: {len(crops)} crops of {args.crop}x{args.crop}, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
