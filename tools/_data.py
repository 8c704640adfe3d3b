"""What the tools share: reading photographs, and writing a JSON report.

Shared by the training and benchmark scripts. The training scripts take the
training folder only: never point them at a benchmark set (Kodak, Set5, ...).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
from PIL import Image

from tinycodec.errors import TinyCodecError
from tinycodec.rd import list_images


def image_paths(folder: str | Path) -> list[Path]:
    """The images of a folder, sorted by name (the same selection as `tinycodec rd`)."""
    try:
        return list_images(folder)
    except TinyCodecError as exc:
        raise SystemExit(str(exc)) from None


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Random crops (with horizontal/vertical flips) from images held in memory.

    Images are drawn in proportion to their area so every pixel is equally likely.
    """

    def __init__(self, images: list[np.ndarray], seed: int) -> None:
        self.images = images
        areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, crop: int) -> np.ndarray:
        """(size, 3, crop, crop) float32 in [0, 1]."""
        out = np.empty((size, crop, crop, 3), dtype=np.uint8)
        for i, idx in enumerate(self.rng.choice(len(self.images), size=size, p=self.weights)):
            im = self.images[idx]
            y = self.rng.integers(0, im.shape[0] - crop + 1)
            x = self.rng.integers(0, im.shape[1] - crop + 1)
            patch = im[y : y + crop, x : x + crop]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[::-1]
            out[i] = patch
        return out.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


# Instruction sets that decide how fast ONNX Runtime's int8 kernels are against float: without VNNI
# (AVX2 only) a U8S8 dot product takes three instructions and saturates at 16 bits; with AVX-512 VNNI
# or AVX-VNNI it is one. The same int8 graphs (UNet, SRUNet) measured 1.73-1.93x their fp32 graphs on an AVX2 CPU
# and 2.33-2.44x on an AVX-512 VNNI one (README, "int8 against fp32"; 2.24-2.63x there once recalibrated
# on the v7 codec's decodes).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and which of :data:`INT8_FLAGS` it has (Linux: /proc/cpuinfo).

    Benchmarks record it: int8 speedups depend on it more than on anything else.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"model": model or platform.processor() or platform.machine(),
            "int8_flags": [f for f in INT8_FLAGS if f in flags]}


def describe_cpu(info: dict | None = None) -> str:
    """One line: ``AMD EPYC (avx2, avx512f, avx512_vnni)``."""
    info = cpu_info() if info is None else info
    return f"{info['model']} ({', '.join(info['int8_flags']) or 'none of ' + ', '.join(INT8_FLAGS)})"


def write_report(path: Path, report: dict) -> None:
    """Write a benchmark's JSON report (indented, creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
