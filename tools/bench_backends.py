#!/usr/bin/env python3
"""Every network x backend x precision available here: quality and speed (the seed's two tables).

    python tools/bench_backends.py --kodak ../shared/data/kodak/kodim23.png \\
        --json docs/results/bench_backends_cpu.json

For each network (codec encoder/decoder per scale, every registered filter)
and each available (backend, precision) on --device, on a Kodak-sized image
(768x512) and on a 1920x1080 one:

- quality: PSNR, SSIM and MS-SSIM of the result against PyTorch fp32's result
  and against the original photograph. Results are images: the encoder's
  latent is quantised (8 planes) and decoded with PyTorch fp32; the decoder
  decodes the fp32 encoder's latent; UNet cleans a tinycodec-decoded image
  (scale 16, 8 planes); SRUNet restores a ``--downscale 2`` file (the image
  bicubic-halved, then tinycodec-decoded at scale 16); TinyPSSR-xr enlarges the
  image bicubic-downscaled by r (run on each colour channel). So the *image*
  is 768x512 or 1920x1080; a super-resolution network's input is r times smaller.
- speed: the network alone (``Runner.run`` on the prepared float32 batch:
  no tiling, no uint8 conversion), median and spread (p10, p90, IQR, min) over
  --runs timed rounds after --warmup; in each round every configuration runs
  once, in turn, and a speedup is the median over rounds of the ratio of the
  two times (paired, so that the machine's drift cancels). When the first
  round shows --runs rounds would take longer than --max-seconds per
  configuration, fewer are made (never fewer than --min-runs); the JSON
  records the rounds actually made.

``--random-filters`` adds filters that have no registered weights yet with
random weights, labelled ``"weights": "random-init"`` (speed is meaningful,
quality against the original is not). The JSON also records what ``auto``
picks for each network and precision, the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _data import cpu_info, describe_cpu  # noqa: E402

from tinycodec import backends, quantize, zoo  # noqa: E402
from tinycodec.codec import simulate_rgb  # noqa: E402
from tinycodec.errors import TinyCodecError  # noqa: E402
from tinycodec.filters import FILTERS  # noqa: E402
from tinycodec.image import bicubic_down  # noqa: E402
from tinycodec.networks import Network, network, network_names  # noqa: E402
from tinycodec.rd import ms_ssim_rgb, psnr, ssim_rgb  # noqa: E402
from tinycodec.runtime import to_uint8  # noqa: E402

VARIANTS = {"cpu": [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")],
            "cuda": [("torch", "fp32"), ("torch", "fp16"), ("tensorrt", "fp32"), ("tensorrt", "fp16"),
                     ("tensorrt", "int8")]}
FILTER_CODEC_SCALE = 16


def load_images(kodak: Path, hd: Path | None) -> dict[str, tuple[np.ndarray, str]]:
    with Image.open(kodak) as im:
        k = im.convert("RGB")
    images = {"kodak": (np.asarray(k), kodak.name)}
    if hd is not None:
        with Image.open(hd) as im:
            h = im.convert("RGB")
        source = hd.name
    else:  # no 1080p photograph in the data: the Kodak image enlarged (bicubic) to 1920x1280, centre 1080 rows
        h = k.resize((1920, 1280), Image.BICUBIC).crop((0, 100, 1920, 1180))
        source = f"{kodak.name} bicubic-enlarged to 1920x1280, centre-cropped"
    if h.size != (1920, 1080):
        raise SystemExit(f"--hd must be 1920x1080, not {h.size[0]}x{h.size[1]}")
    images["1080p"] = (np.asarray(h), source)
    return images


def planar(rgb: np.ndarray) -> np.ndarray:
    return (rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).copy()


def pad_to(x: np.ndarray, m: int) -> np.ndarray:
    ph, pw = -x.shape[2] % m, -x.shape[3] % m
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge") if ph or pw else x


class Case:
    """A network on one image: its float input, and how its output becomes an image to measure."""

    def __init__(self, net: Network, rgb: np.ndarray) -> None:
        self.net, self.original = net, rgb
        h, w = rgb.shape[:2]
        self.size = (h, w)
        torch_run = {"backend": "torch"}
        if net.is_codec:
            self.entry = net.entry
            if net.part == "encoder":
                self.x = pad_to(planar(rgb), net.multiple)
            else:
                from tinycodec import tiling

                latent = tiling.encode_latent(net.entry, net.scale, self.depth, rgb, **torch_run)
                self.x = self._dequantized(latent)[None]
        else:
            spec = FILTERS[net.name]
            if spec.per_channel:
                small = bicubic_down(rgb, spec.upscale)
                self.x = planar(small).transpose(1, 0, 2, 3).copy()
            else:
                source = bicubic_down(rgb, 2) if spec.upscale == 2 else rgb
                self.x = pad_to(planar(simulate_rgb(source, FILTER_CODEC_SCALE, 8, **torch_run)), spec.multiple)

    @property
    def depth(self) -> int:
        from tinycodec.models import SCALE_DEPTHS

        return SCALE_DEPTHS[self.net.scale]

    @staticmethod
    def _dequantized(latent: np.ndarray) -> np.ndarray:
        lo, hi = quantize.latent_range(latent)
        symbols = quantize.quantize(latent, lo, hi, 8)
        return quantize.dequantize(symbols, np.asarray(lo, np.float32), np.asarray(hi, np.float32), 8)

    def image(self, y: np.ndarray) -> np.ndarray:
        """The network's output as the (H, W, 3) uint8 image a user would get."""
        h, w = self.size
        if self.net.part == "encoder":
            from tinycodec import runtime

            return runtime.run_decoder(self.net.entry, self.net.scale, self._dequantized(y[0]), backend="torch")[:h, :w]
        if self.net.part == "decoder":
            return to_uint8(y[0].transpose(1, 2, 0))[:h, :w]
        if FILTERS[self.net.name].per_channel:
            return to_uint8(np.clip(y[:, 0].transpose(1, 2, 0), 0, 1))[:h, :w]
        return to_uint8(np.clip(y[0].transpose(1, 2, 0), 0, 1))[:h, :w]


def quality(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    out = {"psnr": round(psnr(a, b), 3), "ssim": round(ssim_rgb(a, b), 5)}
    try:
        out["ms_ssim"] = round(ms_ssim_rgb(a, b), 5)
    except TinyCodecError:
        out["ms_ssim"] = None
    return out


def time_interleaved(runners: dict, x: np.ndarray, runs: int, warmup: int, max_seconds: float,
                     min_runs: int) -> tuple[dict, dict]:
    """Time several runners on one input in rounds (each runner once per round, in turn).

    Interleaving makes every configuration see the same machine: on these shared
    cores throughput drifts by a third over minutes, which sequential blocks of
    runs turned into speedups that changed from run to run. Returns per-runner
    timings and each runner's per-round times, from which speedups are taken
    as the median of per-round ratios.
    """
    for runner in runners.values():
        for _ in range(warmup):
            runner.run(x)
    first = 0.0
    for runner in runners.values():
        t0 = time.perf_counter()
        runner.run(x)
        first += time.perf_counter() - t0
    planned = runs
    if first * runs > max_seconds * len(runners):
        planned = max(min_runs, int(max_seconds * len(runners) / max(first, 1e-9)))
    times = {key: [] for key in runners}
    for _ in range(planned):
        for key, runner in runners.items():
            t0 = time.perf_counter()
            runner.run(x)
            times[key].append(time.perf_counter() - t0)
    timings = {}
    for key, series in times.items():
        ms = np.array(series) * 1000
        p10, p25, p50, p75, p90 = np.percentile(ms, [10, 25, 50, 75, 90])
        timings[key] = {"runs": planned, "runs_capped": planned < runs, "warmup": warmup,
                        "median_ms": round(float(p50), 3), "p10_ms": round(float(p10), 3),
                        "p90_ms": round(float(p90), 3), "iqr_ms": round(float(p75 - p25), 3),
                        "min_ms": round(float(ms.min()), 3), "mean_ms": round(float(ms.mean()), 3)}
    return timings, {key: np.array(series) for key, series in times.items()}


def paired_speedup(times: dict, key, baseline) -> float | None:
    """Median over rounds of baseline time / key time (None without the baseline)."""
    if baseline not in times:
        return None
    return round(float(np.median(times[baseline] / times[key])), 2)


def random_filter(name: str, folder: Path) -> None:
    """Register random weights for a filter that has none yet (in a private weights folder)."""
    torch.manual_seed(0)
    model = FILTERS[name].build()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    zoo.save_weights(model, folder / f"{name}.safetensors", {"model": name})


def markdown(rows: list[dict]) -> str:
    lines = ["| network | image | backend | precision | PSNR vs torch fp32 | SSIM vs fp32 | MS-SSIM vs fp32 | "
             "PSNR vs original | fp32 PSNR vs original | median ms | p10-p90 ms | runs | speedup vs torch fp32 | "
             "speedup vs same backend fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q, o = r["vs_torch_fp32"], r["vs_original"]
        lines.append(f"| {r['network']}{' (random-init)' if r['weights'] == 'random-init' else ''} | {r['image']} | "
                     f"{r['backend']} | {r['precision']} | {q['psnr']} | {q['ssim']} | {q['ms_ssim']} | {o['psnr']} | "
                     f"{r['torch_fp32_vs_original_psnr']} | {r['median_ms']} | {r['p10_ms']}-{r['p90_ms']} | "
                     f"{r['runs']} | {r['speedup_vs_torch_fp32']} | {r['speedup_vs_same_backend_fp32']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png",
                    help="a 768x512 photograph")
    ap.add_argument("--hd", type=Path, default=None, help="a 1920x1080 photograph (default: the Kodak one enlarged)")
    ap.add_argument("--images", default="kodak,1080p", help="which of kodak,1080p")
    ap.add_argument("--device", choices=backends.DEVICES, default="cpu")
    ap.add_argument("--networks", default=",".join(network_names()))
    ap.add_argument("--random-filters", action="store_true",
                    help="benchmark filters without registered weights with random weights (labelled random-init)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="per configuration (fewer runs beyond that)")
    ap.add_argument("--min-runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="for every backend (default: all cores)")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "bench_backends_cpu.json")
    ap.add_argument("--update", action="store_true",
                    help="merge into an existing --json: replace its rows of the networks measured now, keep the rest")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    started = time.time()
    load_before = os.getloadavg()
    images = load_images(args.kodak, args.hd)
    images = {k: v for k, v in images.items() if k in args.images.split(",")}

    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    random_init: set[str] = set()
    if args.random_filters:
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="tinycodec-bench-weights-"))
        shutil.copytree(zoo.weights_dir(), folder, dirs_exist_ok=True)
        zoo.weights_dir = lambda: folder  # this process only
        zoo.registry.cache_clear()
        for name in names:
            if name in FILTERS and name not in zoo.registry():
                random_filter(name, folder)
                random_init.add(name)

    rows, skipped, auto = [], [], {}
    for name in names:
        try:
            net = network(name)
        except TinyCodecError as exc:
            skipped.append({"network": name, "reason": str(exc)})
            print(f"{name}: skipped ({exc})", flush=True)
            continue
        weights = "random-init" if name in random_init else net.entry.sha256[:16]
        for precision in ("fp32", "fp16", "int8"):  # what --backend auto --precision P runs this network with
            try:
                picked = backends.get_runner(net, "auto", args.device, precision)
                auto[f"{name} {precision}"] = f"{picked.backend} {picked.precision}"
            except TinyCodecError:
                pass
        for image_name, (rgb, source) in images.items():
            case = Case(net, rgb)
            reference_runner = backends.get_runner(net, "torch", "cpu", "fp32")
            reference = case.image(reference_runner.run(case.x))
            runners, outputs = {}, {}
            for backend, precision in VARIANTS[args.device]:
                if not backends.available(backend, args.device, precision):
                    skipped.append({"network": name, "image": image_name, "backend": backend, "precision": precision,
                                    "reason": backends.backend_problem(backend, args.device, precision)})
                    continue
                runners[(backend, precision)] = backends.get_runner(net, backend, args.device, precision)
                outputs[(backend, precision)] = case.image(runners[(backend, precision)].run(case.x))
            timings, times = time_interleaved(runners, case.x, args.runs, args.warmup, args.max_seconds,
                                              args.min_runs)
            for (backend, precision), timing in timings.items():
                out = outputs[(backend, precision)]
                row = {"network": name, "weights": weights, "image": image_name, "image_source": source,
                       "input_shape": list(case.x.shape), "device": args.device, "backend": backend,
                       "precision": precision, **timing,
                       "speedup_vs_torch_fp32": paired_speedup(times, (backend, precision), ("torch", "fp32")),
                       "speedup_vs_same_backend_fp32": paired_speedup(times, (backend, precision), (backend, "fp32")),
                       "vs_torch_fp32": quality(out, reference), "vs_original": quality(out, rgb),
                       "torch_fp32_vs_original_psnr": round(psnr(reference, rgb), 3)}
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("network", "image", "backend", "precision", "median_ms",
                                                      "p10_ms", "p90_ms", "runs", "speedup_vs_torch_fp32",
                                                      "speedup_vs_same_backend_fp32")}
                                 | {"psnr_vs_fp32": row["vs_torch_fp32"]["psnr"],
                                    "psnr_vs_original": row["vs_original"]["psnr"]}), flush=True)

    result = {
        "command": "python tools/bench_backends.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), **cpu_info(), "cores": os.cpu_count(),
                    "threads": args.threads, "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "python": platform.python_version()},
        "versions": {"torch": torch.__version__, **_ort_versions()},
        "wall_s": round(time.time() - started, 1),
        "notes": ["speed: the network alone on the prepared float32 input; quality: the resulting image",
                  "runs_capped: fewer than --runs because --runs would have exceeded --max-seconds",
                  "random-init: the filter had no registered weights; its quality figures mean nothing"],
        "auto": auto, "results": rows, "skipped": skipped,
    }
    if args.update and args.json.exists():
        previous = json.loads(args.json.read_text())
        measured = set(names)
        result["runs_merged"] = previous.get("runs_merged", [{k: previous[k] for k in ("command", "machine", "wall_s")
                                                              if k in previous}]) + [
            {k: result[k] for k in ("command", "machine", "wall_s")}]
        result["results"] = [r for r in previous["results"] if r["network"] not in measured] + rows
        result["skipped"] = [r for r in previous.get("skipped", []) if r["network"] not in measured] + skipped
        result["auto"] = {k: v for k, v in previous.get("auto", {}).items() if k.split()[0] not in measured} | auto
        order = {n: i for i, n in enumerate(network_names())}
        result["results"].sort(key=lambda r: (order.get(r["network"], 99), r["image"] != "kodak"))
        rows = result["results"]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    md = args.json.with_suffix(".md")
    runs = result.get("runs_merged", [{k: result[k] for k in ("command", "machine", "wall_s")}])
    header = "\n".join(f"- `{r['command']}`: {r['wall_s']} s, {r['machine']['threads']} threads, "
                       + (f"{describe_cpu(r['machine'])}, " if "int8_flags" in r["machine"] else "") + "load average "
                       f"{[round(v, 1) for v in r['machine']['load_average_before']]} before" for r in runs)
    md.write_text(f"# {args.json.name}\n\n{header}\n\n{markdown(rows)}\n")
    print(markdown(rows))
    print(f"wrote {args.json} and {md} in {result['wall_s']} s", flush=True)


def _ort_versions() -> dict[str, str]:
    try:
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    except ImportError:
        return {}


if __name__ == "__main__":
    main()
