"""Compare int8 quantisation recipes for one network: quality against fp32, and speed (ONNX Runtime, CPU).

    python tools/compare_int8_recipes.py ../shared/data/kodak/kodim23.png --network srunet

The figures behind the recipe in ``tinycodec.graphs.quant_settings`` (8-bit weights, MinMax):
each recipe quantises the network with the shipped calibration crops, then runs it on the image
(tinycodec-decoded at scale 16; bicubic-halved first for SRUNet) and prints the PSNR of its output
against the fp32 graph's output and the median of 5 timed runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinycodec import graphs  # noqa: E402
from tinycodec.codec import simulate_rgb  # noqa: E402
from tinycodec.image import bicubic_down  # noqa: E402
from tinycodec.networks import network  # noqa: E402

RECIPES = {
    "8-bit weights, MinMax": {"reduce_range": False},
    "8-bit weights, Percentile": {"reduce_range": False, "calibration": "Percentile"},
    "7-bit weights (reduce_range), MinMax": {"reduce_range": True},
    "int8 activations (S8S8)": {"reduce_range": False, "activations": "QInt8", "activation_symmetric": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--network", default="unet", choices=["unet", "srunet"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import onnxruntime as ort

    net = network(args.network)
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    if net.filter_spec.upscale == 2:
        rgb = bicubic_down(rgb, 2)
    x = simulate_rgb(rgb, 16, 8).transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
    options = graphs._session_options(args.threads)  # the product's: same threads, no spinning

    def run(model: str | bytes) -> tuple[np.ndarray, float]:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        session.run(None, {"input": x})
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            y = session.run(None, {"input": x})[0]
            times.append(time.perf_counter() - t0)
        return np.clip(y, 0, 1), 1000 * float(np.median(times))

    fp32_path = graphs.fp32_graph(net)
    reference, fp32_ms = run(str(fp32_path))
    print(f"{args.network} fp32: {fp32_ms:.0f} ms")
    shipped = graphs.quant_settings
    for label, change in RECIPES.items():
        graphs.quant_settings = lambda flavour, n, c=change: {**shipped(flavour, n), **c}
        try:
            out, ms = run(graphs.quantize_graph(net, fp32_path, "ort", graphs.calibration_crops()))
        finally:
            graphs.quant_settings = shipped
        psnr = 10 * np.log10(1.0 / float(np.mean((out - reference) ** 2)))
        print(f"{label:40s} {psnr:6.2f} dB against fp32, {ms:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
