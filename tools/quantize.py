#!/usr/bin/env python3
"""int8 calibration data for tinycodec, and a check of what int8 does to every network.

tinycodec quantises its networks at first use (ONNX Runtime static
quantisation, QDQ, per-channel weights; see tinycodec/graphs.py), calibrated on
crops of training photographs that ship with the package: this tool makes them.

    python tools/quantize.py ../shared/data/train              # writes tinycodec/data/calibration.npz
    python tools/quantize.py ../shared/data/train --check      # and quantises every registered network,
                                                                # printing PSNR of int8 against fp32

The crops come from the training images only (the last 4, held out for
validation by the training scripts, are the --check images), never from
Kodak or the SR test sets. What each network is calibrated on is derived from
the crops at quantisation time (graphs.calibration_inputs): the photographs
for the encoders, their quantised latents for the decoders, tinycodec-decoded
versions for UNet/SRUNet, bicubic-downscaled ones for TinyPSSR.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _data import image_paths, load_rgb  # noqa: E402

from tinycodec import graphs  # noqa: E402
from tinycodec.errors import TinyCodecError  # noqa: E402
from tinycodec.networks import network, network_names  # noqa: E402

VALIDATION_IMAGES = 4  # as tools/train_codec.py and tools/train_filters.py
OUT = ROOT / "tinycodec" / "data" / graphs.CALIBRATION_FILE


def make_crops(images: list[np.ndarray], count: int, size: int, seed: int) -> np.ndarray:
    """``count`` crops of ``size``x``size``, spread over the images round-robin, random positions."""
    rng = np.random.default_rng(seed)
    crops = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        im = images[i % len(images)]
        y = rng.integers(0, im.shape[0] - size + 1)
        x = rng.integers(0, im.shape[1] - size + 1)
        crops[i] = im[y : y + size, x : x + size]
    return crops


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def check(names: list[str], val_crops: np.ndarray) -> list[dict]:
    """Quantise each network (into the cache) and compare int8 with fp32 ONNX Runtime on held-out crops."""
    import onnxruntime as ort

    rows = []
    for name in names:
        try:
            net = network(name)
        except TinyCodecError as exc:
            print(f"{name:26s} skipped: {exc}", flush=True)
            continue
        start = time.perf_counter()
        int8_path = graphs.int8_graph(net, "ort")
        built = time.perf_counter() - start
        so = graphs._session_options(1)
        fp32 = ort.InferenceSession(str(graphs.fp32_graph(net)), so, providers=["CPUExecutionProvider"])
        int8 = ort.InferenceSession(str(int8_path), so, providers=["CPUExecutionProvider"])
        values = []
        for x in graphs.calibration_inputs(net, val_crops):
            values.append(psnr(int8.run(None, {"input": x})[0], fp32.run(None, {"input": x})[0]))
        row = {"network": name, "int8_vs_fp32_psnr_db": round(float(np.mean(values)), 2),
               "quantise_s": round(built, 1), "graph_kb": path_kb(int8_path)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def path_kb(path: Path) -> int:
    return path.stat().st_size // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="folder of training photographs (never Kodak or the SR test sets)")
    ap.add_argument("--crops", type=int, default=32, help="calibration crops (default 32)")
    ap.add_argument("--size", type=int, default=128, help="crop side in pixels (multiple of 16; default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT, help=f"default {OUT.relative_to(ROOT)}")
    ap.add_argument("--check", action="store_true",
                    help="then quantise every registered network and print int8-vs-fp32 PSNR on held-out crops")
    ap.add_argument("--networks", default=",".join(network_names()), help="for --check: comma-separated names")
    args = ap.parse_args()
    if args.size % 16:
        ap.error("--size must be a multiple of 16 (the deepest codec level's block)")

    paths = image_paths(args.data)
    images = [load_rgb(p) for p in paths]
    train, val = images[:-VALIDATION_IMAGES], images[-VALIDATION_IMAGES:]
    crops = make_crops(train, args.crops, args.size, args.seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, crops=crops,
                        sources=np.array([paths[i % len(train)].name for i in range(args.crops)]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(args.out)
    print(f"wrote {args.out}: {args.crops} crops of {args.size}x{args.size} from {len(train)} training images, "
          f"{len(buf.getvalue()) / 1e6:.2f} MB, sha256 {graphs.calibration_digest(crops)[:16]}", flush=True)

    if args.check:
        graphs.calibration_crops.cache_clear()
        check([n.strip() for n in args.networks.split(",") if n.strip()], make_crops(val, 8, args.size, args.seed + 1))


if __name__ == "__main__":
    main()
