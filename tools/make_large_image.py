"""Write a large synthetic photograph-like PNG, for memory and speed measurements of very large images.

    python tools/make_large_image.py /tmp/big.png --width 10000 --height 10000

Smooth colour fields and soft blobs (made at low resolution, upsampled
bicubically), hard-edged shapes, fine texture and sensor-like noise: what a
codec meets in a photograph, without needing one of 100 megapixels. The
image is built in horizontal bands, so this tool needs about twice the
image's size in memory (Pillow's copy and the array it is built in).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageDraw


def smooth_field(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """Gradients and blobs at 1/16 of the size, upsampled: large soft structures."""
    h, w = max(2, height // 16), max(2, width // 16)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    y /= h - 1
    x /= w - 1
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        img[:, :, c] = 0.45 + 0.3 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))
        for _ in range(40):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.02, 0.25)
            img[:, :, c] += rng.uniform(-0.25, 0.25) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / r**2)
    small = Image.fromarray(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))
    return small.resize((width, height), Image.BICUBIC)


def add_shapes(image: Image.Image, rng: np.random.Generator, count: int) -> None:
    """Hard edges: rectangles, ellipses and lines of random colours, partly transparent."""
    draw = ImageDraw.Draw(image, "RGBA")
    width, height = image.size
    for _ in range(count):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.005, 0.08) * min(width, height)
        box = [x0, y0, x0 + size * rng.uniform(0.3, 3), y0 + size * rng.uniform(0.3, 3)]
        colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(60, 255)),)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle(box, fill=colour)
        elif kind == 1:
            draw.ellipse(box, fill=colour)
        else:
            draw.line(box, fill=colour, width=int(rng.integers(1, 12)))


def add_texture(arr: np.ndarray, rng: np.random.Generator, band: int = 512) -> None:
    """Fine texture (a few oriented waves) and noise, band by band to bound the float temporaries."""
    height, width = arr.shape[:2]
    waves = [(rng.uniform(0.05, 0.6), rng.uniform(0, np.pi), rng.uniform(2, 6)) for _ in range(3)]
    xs = np.arange(width, dtype=np.float32)
    for y0 in range(0, height, band):
        y1 = min(height, y0 + band)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        texture = np.zeros((y1 - y0, width), np.float32)
        for freq, angle, amplitude in waves:
            texture += amplitude * np.sin(freq * (xs * np.cos(angle) + ys * np.sin(angle)))
        noisy = arr[y0:y1].astype(np.float32) + texture[:, :, None] + rng.normal(0, 2.5, (y1 - y0, width, 3))
        arr[y0:y1] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--width", type=int, default=10000)
    parser.add_argument("--height", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compress-level", type=int, default=1, help="PNG zlib level (1: fast, larger file)")
    args = parser.parse_args()
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    image = smooth_field(args.height, args.width, rng)
    add_shapes(image, rng, count=int(3000 * args.width * args.height / 1e8) + 20)
    arr = np.array(image)
    del image
    add_texture(arr, rng)
    Image.fromarray(arr).save(args.output, compress_level=args.compress_level)
    print(f"wrote {args.output}: {args.width}x{args.height}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
