#!/usr/bin/env python3
"""Throughput of `tcenc --engine ray` against `tcenc -j N` on the same folder, and the same bytes from both.

    python tools/bench_ray_batch.py --generate 200                    # 200 generated 256x256 images
    python tools/bench_ray_batch.py --generate 200 --kill-half        # also: kill the Ray run half-way, rerun
    python tools/bench_ray_batch.py --generate 200 --standing-cluster  # also: Ray on a cluster started once
    python tools/bench_ray_batch.py ../shared/data/kodak -- -Q 50 --effort refine --refine 10

Both engines run as a user runs them (`python -c "from tinycodec.cli import tcenc; tcenc()"`, so
the tinycodec on PYTHONPATH), with N CPUs: the local pool with N worker processes, Ray with a new
local cluster of N CPUs. Printed per run: wall time (everything the user waits for: Python and
PyTorch start-up, the pool's workers or the Ray cluster starting and stopping) and images per
second over it; then the Ray/local ratio, whether every output is byte for byte the same, and
whether the manifest lists every input. Arguments after `--` go to both tcenc runs. With --standing-cluster, a third
run joins a cluster started before the timing (as a user who converts folder after folder keeps
one running, `ray start --head`), so that its wall time holds no cluster start or stop.
With --kill-half, a third run (Ray) is killed (SIGKILL of its process group) once half of the
outputs exist, then rerun: the done files must be skipped (same inode and mtime), the rest coded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def generate(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """n smooth random RGB images (bicubic upsampling of a coarse random grid, plus mild noise)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        coarse = rng.integers(0, 256, (size // 32 + 2, size // 32 + 2, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int16)
        noisy = np.clip(smooth + rng.integers(-3, 4, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img{i:04d}.png")


def tcenc_command(src: Path, out: Path, engine_args: list[str], extra: list[str]) -> list[str]:
    return [sys.executable, "-c", "from tinycodec.cli import tcenc; tcenc()", str(src), "-o", f"{out}/",
            *engine_args, *extra]


def environment(**extra: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), **extra}


def timed(cmd: list[str], **env: str) -> tuple[float, str]:
    """Wall seconds and the last line on stderr (the summary); exits if the command failed."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=environment(**env))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return seconds, (proc.stderr.strip().splitlines() or [""])[-1]


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tcz"))}


def manifest_complete(path: Path, sources: list[Path], statuses: set[str]) -> bool:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return (sorted(Path(r["input"]).name for r in records) == sorted(p.name for p in sources)
            and all(r["status"] in statuses and r["error"] is None for r in records))


# A process that starts a local cluster, prints its address and keeps it until its stdin closes.
HEAD = """
import logging, sys, ray
context = ray.init(address="local", num_cpus=int(sys.argv[1]), include_dashboard=False,
                   logging_level=logging.ERROR)
print(context.address_info["address"], flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def standing_cluster(cpus: int):
    """A local cluster of ``cpus`` CPUs started before the timing; its address. Stopped on the way out."""
    head = subprocess.Popen([sys.executable, "-c", HEAD, str(cpus)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=environment())
    try:
        address = head.stdout.readline().strip()
        if not address:
            raise SystemExit("could not start a Ray cluster")
        yield address
    finally:
        head.stdin.close()  # ray.shutdown() at its exit
        head.wait(timeout=60)


def kill_half_and_resume(src: Path, work: Path, cpus: int, extra: list[str], reference: dict[str, bytes]) -> None:
    out = work / "resumed"
    cmd = tcenc_command(src, out, ["--engine", "ray", "-j", str(cpus), "-q", "--manifest", str(work / "resumed.jsonl")],
                        extra)
    driver = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=environment(), start_new_session=True)
    half = len(reference) // 2
    while driver.poll() is None and len(list(out.glob("*.tcz"))) < half:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(3)  # the local cluster's processes see their driver gone and stop; a write may still land first
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.tcz")}
    seconds, _ = timed(cmd)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.tcz")}
    untouched = all(after[name] == stat for name, stat in done.items())
    same = outputs(out) == reference
    sources = sorted(p for p in src.iterdir() if p.suffix == ".png")
    records = [json.loads(line) for line in (work / "resumed.jsonl").read_text().splitlines()]
    skipped = {Path(r["output"]).name for r in records if r["status"] == "skipped"}
    print(f"kill half-way: {len(done)} of {len(reference)} outputs there when killed; rerun {seconds:.1f} s; "
          f"skipped {len(skipped)} (the done ones: {skipped == set(done)}), untouched: {untouched}, "
          f"all bytes as local: {same}, manifest complete: "
          f"{manifest_complete(work / 'resumed.jsonl', sources, {'done', 'skipped'})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, help="Images to encode (or --generate N).")
    parser.add_argument("--generate", type=int, metavar="N", help="Generate N images instead.")
    parser.add_argument("--size", type=int, default=256, help="Side of the generated images (default 256).")
    parser.add_argument("-j", "--cpus", type=int, default=2, help="Workers / Ray CPUs (default 2).")
    parser.add_argument("--repeat", type=int, default=1, help="Alternate local and Ray runs this many times.")
    parser.add_argument("--kill-half", action="store_true", help="Also kill a Ray run half-way and rerun it.")
    parser.add_argument("--standing-cluster", action="store_true",
                        help="Also time Ray on a cluster started before the run.")
    parser.add_argument("--keep", type=Path, default=None, help="Work in this folder and keep it.")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # tcenc options for both runs
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    args.extra = extra
    if (args.folder is None) == (args.generate is None):
        parser.error("give a FOLDER or --generate N")

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_ray_batch."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = args.folder
        if src is None:
            src = work / "images"
            generate(src, args.generate, args.size)
        sources = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
        n = len(sources)
        print(f"{n} images from {src}; tcenc {' '.join(args.extra) or '(defaults)'}; {args.cpus} CPUs; "
              f"{os.cpu_count()} cores here")
        local_best = ray_best = float("inf")
        for round_ in range(args.repeat):
            for name in ("local", "ray"):
                shutil.rmtree(work / name, ignore_errors=True)
            local_s, local_line = timed(tcenc_command(src, work / "local", ["-j", str(args.cpus)], args.extra))
            ray_s, ray_line = timed(tcenc_command(src, work / "ray", ["--engine", "ray", "-j", str(args.cpus),
                                                                      "--manifest", str(work / "ray.jsonl")],
                                                  args.extra))
            print(f"round {round_ + 1}: local {local_s:6.1f} s, {n / local_s:6.2f} images/s   | {local_line}")
            print(f"round {round_ + 1}: ray   {ray_s:6.1f} s, {n / ray_s:6.2f} images/s   | {ray_line}")
            local_best, ray_best = min(local_best, local_s), min(ray_best, ray_s)
        reference = outputs(work / "local")
        print(f"best: local {n / local_best:.2f} images/s, ray {n / ray_best:.2f} images/s, "
              f"ray/local throughput {local_best / ray_best:.3f}")
        print(f"same bytes: {reference == outputs(work / 'ray')} ({len(reference)} files); manifest complete: "
              f"{manifest_complete(work / 'ray.jsonl', sources, {'done'})}")
        if args.standing_cluster:
            with standing_cluster(args.cpus) as address:
                best = float("inf")
                for round_ in range(args.repeat):
                    shutil.rmtree(work / "standing", ignore_errors=True)
                    # the cluster has Ray's token authentication (on where ~/.ray/auth_token exists): say so
                    seconds, line = timed(tcenc_command(src, work / "standing", ["--engine", "ray", "--ray-address",
                                                                                 address], args.extra),
                                          RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "token"))
                    print(f"round {round_ + 1}: ray on a standing cluster {seconds:6.1f} s, {n / seconds:6.2f} "
                          f"images/s | {line}")
                    best = min(best, seconds)
            print(f"best: ray on a standing cluster {n / best:.2f} images/s, ray/local throughput "
                  f"{local_best / best:.3f}; same bytes: {reference == outputs(work / 'standing')}")
        if args.kill_half:
            kill_half_and_resume(src, work, args.cpus, args.extra, reference)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
