"""Peak memory and time of the command-line tools on one very large image (the README's large-image table).

    python tools/make_large_image.py /tmp/big.png --width 10000 --height 10000
    python tools/bench_large_image.py /tmp/big.png --scales 16,4 --json docs/results/large_image.json

Each ``tcenc`` / ``tcdec`` runs as its own process under ``/usr/bin/time -v``
with one thread (``OMP_NUM_THREADS=1``, ``-j 1``): peak memory is its
"Maximum resident set size", time the whole command's wall clock (PNG reading
and writing included) and, from the tools' ``-v`` line, the codec's own share.
PSNR is computed here in bands of rows: the float64 difference of a whole
10000x10000 image would take 2.4 GB (the two 8-bit images take 0.6 GB).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tinycodec from a checkout, as the other tools
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import write_report  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # our own synthetic image, whatever its size

TIME_FIELDS = {
    "elapsed_s": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
    "user_s": r"User time \(seconds\): (\S+)",
    "sys_s": r"System time \(seconds\): (\S+)",
    "max_rss_kb": r"Maximum resident set size \(kbytes\): (\d+)",
}


def wall_seconds(text: str) -> float:
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def timed(command: list[str], tmp: str) -> dict:
    """Run one tool under /usr/bin/time -v on one thread; its figures, or exit with its error.

    The command is recorded with the temporary folder ``tmp`` written as ``$TMP``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    out = {"command": ("OMP_NUM_THREADS=1 /usr/bin/time -v " + " ".join(command)).replace(tmp, "$TMP")}
    for key, pattern in TIME_FIELDS.items():
        value = re.search(pattern, proc.stderr).group(1)
        out[key] = wall_seconds(value) if key == "elapsed_s" else (int(value) if key == "max_rss_kb" else float(value))
    codec_ms = re.search(r", (\d+) ms\s*$", proc.stderr, re.MULTILINE)  # the -v summary line
    out["codec_s"] = int(codec_ms.group(1)) / 1000 if codec_ms else None
    return out


def psnr_rgb(a_path: Path, b_path: Path, band: int = 1024) -> float:
    a, b = Image.open(a_path).convert("RGB"), Image.open(b_path).convert("RGB")
    if a.size != b.size:
        sys.exit(f"size changed: {a.size} -> {b.size}")
    width, height = a.size
    total = 0.0
    for top in range(0, height, band):
        box = (0, top, width, min(top + band, height))
        d = np.asarray(a.crop(box), np.float64) - np.asarray(b.crop(box), np.float64)
        total += float(np.sum(d * d))
    mse = total / (width * height * 3)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", type=Path, help="a large PNG (tools/make_large_image.py makes one)")
    ap.add_argument("--scales", default="16,4", help="comma-separated scale levels")
    ap.add_argument("--planes", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    with Image.open(args.image) as im:
        width, height = im.size
    report: dict = {"image": {"path": str(args.image), "width": width, "height": height,
                              "png_bytes": args.image.stat().st_size},
                    "machine": {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]},
                    "runs": []}
    print(f"{args.image}: {width}x{height}, {report['image']['png_bytes']} bytes")
    print(f"{'command':8s} {'scale':>5s} {'peak MiB':>9s} {'time s':>7s} {'codec s':>8s}  result")
    with tempfile.TemporaryDirectory(prefix="tinycodec-large-") as tmp:
        for scale in (int(s) for s in args.scales.split(",")):
            tcz, png = Path(tmp) / f"s{scale}.tcz", Path(tmp) / f"s{scale}.png"
            enc = timed(["tcenc", str(args.image), "-s", str(scale), "--planes", str(args.planes), "-j", "1",
                         "-o", str(tcz), "-v"], tmp)
            size = tcz.stat().st_size
            bpp = 8 * size / (width * height)
            print(f"{'tcenc':8s} {scale:5d} {enc['max_rss_kb'] / 1024:9.0f} {enc['elapsed_s']:7.1f} "
                  f"{enc['codec_s']:8.1f}  {size} bytes, {bpp:.3f} bpp", flush=True)
            dec = timed(["tcdec", str(tcz), "-j", "1", "-o", str(png), "-v"], tmp)
            db = psnr_rgb(args.image, png)
            print(f"{'tcdec':8s} {scale:5d} {dec['max_rss_kb'] / 1024:9.0f} {dec['elapsed_s']:7.1f} "
                  f"{dec['codec_s']:8.1f}  PSNR-RGB {db:.2f} dB", flush=True)
            report["runs"].append({"scale": scale, "planes": args.planes, "tcz_bytes": size, "bpp": round(bpp, 4),
                                   "psnr_rgb_db": round(db, 4), "encode": enc, "decode": dec})
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
