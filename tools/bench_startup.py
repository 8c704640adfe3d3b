"""Whole-process times of the command lines, as ratios against references measured in the same run.

    python tools/bench_startup.py ../shared/data/kodak [--image kodim23.png] [--repeats 7] [--json out.json]

Each command is a fresh interpreter, run the way the console scripts run it (``from tinycodec.cli import
tcdec; sys.exit(tcdec())``) on this checkout (PYTHONPATH); the commands take turns, round after round, so
that a busy machine slows them alike, and each figure is the median of ``--repeats`` rounds. References:
``python -c pass`` and Pillow decoding a JPEG of the same image (quality 90) and writing it as PNG, in one
process. Commands: ``tcdec --help``, ``tcenc -V``, ``tcdec`` of the image coded with the defaults (auto, and
``--backend torch`` for the cost of PyTorch), of the image coded with ``-Q 50`` (shallow family) and
``-Q 50 --family pyramid``, and ``tcenc`` with the defaults.

Then the breakdown of each coding command: a fresh interpreter times its stages in order (importing the
CLI, the codec's modules and PyTorch where the command uses it; reading the weights; building the
networks; then the command itself, with the time spent in the entropy coder, the networks and writing
the output summed by wrapping those functions). The rest of the process's time is the interpreter's start
and exit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_ENTRY = "import sys; from tinycodec.cli import {0}; sys.exit({0}())"


# ------------------------------------------------------------------------- the probe (a child process)


def _probe(kind: str, src: str, dst: str, backend: str) -> dict[str, float]:
    """Run one coding command in this fresh process; seconds per stage, in the order they ran."""
    stages: dict[str, float] = {}
    last = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[name] = now - last
        last = now

    from tinycodec import cli
    stage("import tinycodec.cli")
    from tinycodec import backends, container, container_v2, entropy, families, files, runtime, zoo
    from tinycodec.networks import codec_network
    from tinycodec.options import DEFAULT_SCALE
    stage("import the codec's modules")
    family = families.identify(Path(src).read_bytes()[:12]) if kind == "decode" else families.TINYCOMPRESS
    if backend == "torch":
        import torch  # noqa: F401
        stage("import PyTorch")

    if kind == "encode":
        entry, net, scale = zoo.current_entry(zoo.model_name(DEFAULT_SCALE)), "encoder", DEFAULT_SCALE
    else:
        data = Path(src).read_bytes()
        read = container.read_header if family == families.TINYCOMPRESS else container_v2.read_header
        header = read(data)[0]
        entry, net, scale = zoo.entry_for_file(header.model, header.weights_id), "decoder", getattr(header, "scale", 0)
    zoo.load_tensors(entry)  # cached: the command finds them loaded
    stage("weights (read, verify)")
    if family == families.SHALLOW:
        from tinycodec.shallow import weights

        weights.load_decoder(entry)
        parts = {"entropy decoding (with the hyperprior)": ("tinycodec.shallow.bitstream", "decode_latents"),
                 "network run (synthesis)": ("tinycodec.shallow.decoder", "synthesise")}
    elif family == families.PYRAMID:
        from tinycodec.pyramid import weights

        weights.load_decoder(entry)
        parts = {"entropy decoding (with the context model)": ("tinycodec.pyramid.bitstream", "decode_grids"),
                 "network run (synthesis)": ("tinycodec.pyramid.codec", "synthesise")}
    else:
        backends.get_runner(codec_network(entry, scale, net), backend)
        parts = {"entropy coding": (entropy.__name__, "encode_tile"), "network run": (runtime.__name__, "run_encoder"),
                 "image reading": (files.__name__, "read_source")} if kind == "encode" else \
                {"entropy decoding": (entropy.__name__, "decode_tile"), "network run": (runtime.__name__, "run_decoder")}
    stage("networks (build)")
    parts["image writing" if kind == "decode" else "file writing"] = \
        (files.__name__, "save_image" if kind == "decode" else "write_atomic")

    spent = dict.fromkeys(parts, 0.0)
    for name, (module, attr) in parts.items():
        _wrap(importlib.import_module(module), attr, spent, name)
    command = cli.tcenc if kind == "encode" else cli.tcdec
    args = [src, "-o", dst, "-f", "-q", "--backend", backend]
    try:
        command.main(args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    stage("command")
    stages.update(spent)
    stages["command"] -= sum(spent.values())
    stages["the rest of the command"] = stages.pop("command")
    return stages


def _wrap(module, attr: str, spent: dict[str, float], name: str) -> None:
    inner = getattr(module, attr)

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t

    setattr(module, attr, timed)


# ------------------------------------------------------------------------------------------ the parent


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, done.stdout


def _cli(command: str, *args) -> list[str]:
    return [sys.executable, "-c", _ENTRY.format(command), *map(str, args)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", help="Kodak (or any) image folder")
    ap.add_argument("--image", default=None, help="file name in the folder (default: the first image)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--probe", nargs=4, metavar=("KIND", "SRC", "DST", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(_probe(*args.probe)))
        return
    if args.folder is None:
        ap.error("the image folder is required")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _data import cpu_info, describe_cpu, image_paths, write_report
    from PIL import Image

    paths = image_paths(args.folder)
    image = Path(args.folder) / args.image if args.image else paths[0]
    env = _env()
    load = os.getloadavg()  # other work on the machine: the ratios are robust to it, the seconds are not
    work = Path(tempfile.mkdtemp(prefix="bench_startup."))
    try:
        with Image.open(image) as im:
            size = im.size
            im.convert("RGB").save(work / "ref.jpg", quality=90)
        tcz, sha, pyr = work / "image.tcz", work / "image-q50.tcz", work / "image-q50-pyramid.tcz"
        _run(_cli("tcenc", image, "-o", tcz, "-q"), env)
        _run(_cli("tcenc", image, "-Q", "50", "-o", sha, "-q"), env)
        _run(_cli("tcenc", image, "-Q", "50", "--family", "pyramid", "-o", pyr, "-q"), env)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "Pillow: JPEG -> PNG, one process": [sys.executable, "-c", "from PIL import Image; "
                                                 f"Image.open({str(work / 'ref.jpg')!r}).save({str(work / 'ref.png')!r})"],
            "tcdec --help": _cli("tcdec", "--help"),
            "tcenc -V": _cli("tcenc", "-V"),
            "tcdec image.tcz -o out.png": _cli("tcdec", tcz, "-o", work / "out.png", "-f", "-q"),
            "tcdec image.tcz -o out.png --backend torch": _cli("tcdec", tcz, "-o", work / "out.png", "-f", "-q",
                                                               "--backend", "torch"),
            "tcdec image-q50.tcz -o out.png (shallow)": _cli("tcdec", sha, "-o", work / "out.png", "-f", "-q"),
            "tcdec image-q50.tcz -o out.png (pyramid)": _cli("tcdec", pyr, "-o", work / "out.png", "-f", "-q"),
            "tcenc image.png -o out.tcz": _cli("tcenc", image, "-o", work / "out.tcz", "-f", "-q"),
        }
        probes = {
            "tcdec image.tcz -o out.png": ("decode", tcz, "auto"),
            "tcdec image.tcz -o out.png --backend torch": ("decode", tcz, "torch"),
            "tcdec image-q50.tcz -o out.png (shallow)": ("decode", sha, "auto"),
            "tcdec image-q50.tcz -o out.png (pyramid)": ("decode", pyr, "auto"),
            "tcenc image.png -o out.tcz": ("encode", image, "auto"),
        }
        times = {name: [] for name in commands}
        stages: dict[str, list[dict[str, float]]] = {name: [] for name in probes}
        probe_totals: dict[str, list[float]] = {name: [] for name in probes}
        for _ in range(args.repeats):
            for name, argv in commands.items():
                times[name].append(_run(argv, env)[0])
            for name, (kind, src, backend) in probes.items():
                dst = work / ("probe.png" if kind == "decode" else "probe.tcz")
                elapsed, out = _run([sys.executable, __file__, "--probe", kind, str(src), str(dst), backend], env)
                probe_totals[name].append(elapsed)
                stages[name].append(json.loads(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(t) for name, t in times.items()}
    base, pillow = med["python -c pass"], med["Pillow: JPEG -> PNG, one process"]
    print(f"{describe_cpu()}, {os.cpu_count()} CPUs (load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after); "
          f"Python {sys.version.split()[0]}; {image.name} {size[0]}x{size[1]}; medians of {args.repeats} rounds")
    print(f"\n{'whole process':<46} {'median s':>9} {'min s':>7} {'- pass s':>9} {'x pass':>7} {'x Pillow':>9}")
    for name, t in times.items():
        print(f"{name:<46} {med[name]:>9.3f} {min(t):>7.3f} {med[name] - base:>9.3f} {med[name] / base:>7.2f} "
              f"{med[name] / pillow:>9.2f}")
    breakdown = {}
    for name, runs in stages.items():
        parts = {stage: statistics.median(r.get(stage, 0.0) for r in runs) for stage in runs[0]}
        total = statistics.median(probe_totals[name])
        parts["interpreter start and exit (the rest)"] = total - sum(parts.values())
        breakdown[name] = {"total": total, "stages": parts}
        print(f"\nbreakdown: {name} (a fresh process, {total:.3f} s; medians per stage)")
        for stage, seconds in parts.items():
            print(f"  {stage:<46} {seconds:>7.3f} s {seconds / base:>6.2f} x pass {100 * seconds / total:>5.1f}%")
    if args.json:
        write_report(args.json, {"cpu": cpu_info(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                                 "load_average": [load[0], os.getloadavg()[0]],
                                 "image": image.name, "size": size, "repeats": args.repeats,
                                 "whole_process_s": {n: {"median": med[n], "min": min(t), "x_pass": med[n] / base,
                                                         "x_pillow": med[n] / pillow} for n, t in times.items()},
                                 "breakdown_s": breakdown})


if __name__ == "__main__":
    main()
