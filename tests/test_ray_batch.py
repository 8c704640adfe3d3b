"""tcenc/tcdec --engine ray on a real local Ray cluster (2 CPUs): same bytes as the local pool, resume, kills."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tinycodec
from tinycodec import files
from tinycodec.cli import tcdec, tcenc

from .conftest import photo_like, run_with_stderr_on_a_terminal

ray = pytest.importorskip("ray")

# Every write on the cluster's workers pauses this long half-way, so that kills land while files are in flight.
PAUSE_S = 0.25


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (starting one takes seconds); its address, for other drivers."""
    os.environ[files.PAUSE_MID_WRITE_ENV] = str(PAUSE_S)  # the cluster's processes inherit it, this one does not
    try:
        context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                           logging_level=logging.ERROR)
    finally:
        del os.environ[files.PAUSE_MID_WRITE_ENV]
    yield context.address_info["address"]
    ray.shutdown()


def make_photos(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.fromarray(photo_like(24 + i % 3, 40, seed=i)).save(folder / f"p{i:02d}.png")
    return folder


def run(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args])


def manifest(path: Path) -> dict[str, dict]:
    """The manifest's records by input file name."""
    return {Path(r["input"]).name: r for r in map(json.loads, path.read_text().splitlines())}


def valid_tcz(folder: Path) -> dict[str, bytes]:
    """Every visible file of the folder, each checked whole (a half-written one fails here)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            tinycodec.verify(p.read_bytes())
            out[p.name] = p.read_bytes()
    return out


def stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.tcz")}


def test_same_bytes_as_the_local_pool_and_a_complete_manifest(cluster, tmp_path):
    src = make_photos(tmp_path / "photos", 5)
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    r = run(tcenc, [src, "-o", f"{tmp_path / 'ray'}/", "-s", "256", "--engine", "ray",
                    "--manifest", tmp_path / "m.jsonl", "--psnr"])
    assert r.exit_code == 1, r.output  # the broken file fails, by name; the others complete
    lines = r.output.splitlines()
    assert [line for line in lines if "error" in line] == [f"tcenc: error: {src / 'broken.png'}: not an image "
                                                           f"Pillow can read: {src / 'broken.png'}"]
    assert lines[-1].startswith("tcenc: 5 of 6 files, 1 failed, ") and lines[-1].endswith("(2 workers, Ray)")
    assert run(tcenc, [*sorted(src.glob("p*.png")), "-o", f"{tmp_path / 'local'}/", "-s", "256", "-j", "2",
                       "-q"]).exit_code == 0
    coded = valid_tcz(tmp_path / "ray")
    assert coded == valid_tcz(tmp_path / "local") and len(coded) == 5

    records = manifest(tmp_path / "m.jsonl")
    assert records["broken.png"]["status"] == "failed" and "not an image" in records["broken.png"]["error"]
    assert records["broken.png"]["bytes"] is None
    for name, data in coded.items():
        record = records[name.replace(".tcz", ".png")]
        assert list(record) == ["input", "output", "status", "bytes", "bpp", "psnr", "seconds", "error"]
        assert record["status"] == "done" and record["bytes"] == len(data) and record["error"] is None
        assert record["output"] == str(tmp_path / "ray" / name)
        assert record["bpp"] > 0 and 20 < record["psnr"] < 60 and record["seconds"] > 0

    r = run(tcdec, [tmp_path / "ray", "-o", f"{tmp_path / 'decoded'}/", "--engine", "ray", "-q"])
    assert r.exit_code == 0 and r.output == ""
    for name in coded:
        decoded = np.asarray(Image.open(tmp_path / "decoded" / name.replace(".tcz", ".png")))
        assert decoded.shape[1] == 40 and decoded.shape[0] in (24, 25, 26)


def test_a_rerun_skips_valid_outputs_and_reports_invalid_ones(cluster, tmp_path, monkeypatch):
    make_photos(tmp_path / "photos", 3)
    make_photos(tmp_path / "photos" / "sub", 1)  # a folder tree (-r): out/sub/p00.tcz
    monkeypatch.chdir(tmp_path)  # relative names, and the workers' working folder is another one
    out = tmp_path / "out"
    args = ["photos", "-r", "-o", "out/", "-s", "256", "--engine", "ray", "--manifest", "m.jsonl"]
    assert run(tcenc, args).exit_code == 0
    outputs = sorted(json.loads(line)["output"] for line in (tmp_path / "m.jsonl").read_text().splitlines())
    assert outputs == ["out/p00.tcz", "out/p01.tcz", "out/p02.tcz", "out/sub/p00.tcz"]  # as the user named them
    before = stats(out) | {"sub": (out / "sub" / "p00.tcz").stat().st_mtime_ns}
    r = run(tcenc, args)
    assert r.exit_code == 0 and "4 of 4 files, 4 already done" in r.output
    assert stats(out) | {"sub": (out / "sub" / "p00.tcz").stat().st_mtime_ns} == before  # nothing rewritten
    records = manifest(tmp_path / "m.jsonl")
    assert {r["status"] for r in records.values()} == {"skipped"} and all(r["bytes"] > 0 for r in records.values())

    damaged = bytearray((out / "p01.tcz").read_bytes())
    damaged[-3] ^= 0xFF  # a payload byte: only the checksum tells
    (out / "p01.tcz").write_bytes(damaged)
    r = run(tcenc, args)
    assert r.exit_code == 1
    assert "p01.tcz exists but is not a valid output (corrupt .tcz file: checksum mismatch" in r.output
    assert "use -f to replace it" in r.output and "4 files, 1 failed, 3 already done" in r.output
    assert (out / "p01.tcz").read_bytes() == damaged  # reported, not replaced
    assert run(tcenc, [*args, "-f", "-q"]).exit_code == 0
    assert len(valid_tcz(out)) == 3 and (out / "sub" / "p00.tcz").is_file()


def busy_workers() -> list[int]:
    """Ray workers running a batch task now (Ray names a worker's process after its task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_run_job"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _kill_first_busy_worker(killed: list[int], deadline: float) -> None:
    while time.monotonic() < deadline and not killed:
        for pid in busy_workers()[:1]:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.02)


def test_a_killed_worker_loses_nothing(cluster, tmp_path):
    src = make_photos(tmp_path / "photos", 8)
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_first_busy_worker, args=(killed, time.monotonic() + 30))
    watcher.start()
    r = run(tcenc, [src, "-o", f"{tmp_path / 'out'}/", "-s", "256", "--engine", "ray",
                    "--manifest", tmp_path / "m.jsonl"])
    watcher.join()
    assert killed, "no worker was seen running a task"
    assert r.exit_code == 0, r.output
    assert "8 of 8 files" in r.output
    assert len(valid_tcz(tmp_path / "out")) == 8  # the killed worker's file was retried elsewhere
    assert {r["status"] for r in manifest(tmp_path / "m.jsonl").values()} == {"done"}


def test_a_killed_run_resumes_without_redoing_the_done_files(cluster, tmp_path):
    src = make_photos(tmp_path / "photos", 12)
    out = tmp_path / "out"
    args = [src, "-o", f"{out}/", "-s", "256", "--engine", "ray", "--manifest", tmp_path / "m.jsonl"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", "from tinycodec.cli import tcenc; tcenc()", *map(str, args), "--ray-address", cluster]
    driver = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and driver.poll() is None and len(list(out.glob("*.tcz"))) < 4:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the whole job, half-way
    assert driver.wait() == -signal.SIGKILL, driver.stdout.read().decode()
    deadline = time.monotonic() + 10
    while busy_workers() and time.monotonic() < deadline:  # Ray ends the dead driver's tasks; one may land first
        time.sleep(0.05)
    done = stats(out)
    assert 4 <= len(done) < 12
    valid_tcz(out)  # what is there is whole (the files in flight are hidden temporaries)
    written_before_the_kill = manifest(tmp_path / "m.jsonl")
    assert set(written_before_the_kill) <= {name.replace(".tcz", ".png") for name in done}

    r = run(tcenc, args)  # the same command again
    assert r.exit_code == 0, r.output
    assert f"12 of 12 files, {len(done)} already done" in r.output
    assert {name: stat for name, stat in stats(out).items() if name in done} == done  # not redone
    assert len(valid_tcz(out)) == 12
    records = manifest(tmp_path / "m.jsonl")
    assert len(records) == 12
    assert {name for name, r in records.items() if r["status"] == "skipped"} == \
        {name.replace(".tcz", ".png") for name in done}
    assert all(r["status"] in ("done", "skipped") and r["bytes"] > 0 for r in records.values())


def test_progress_bar_with_rate_and_eta_on_a_terminal(cluster, tmp_path):
    src = make_photos(tmp_path / "photos", 6)
    returncode, text = run_with_stderr_on_a_terminal(["tcenc", src, "-o", f"{tmp_path / 'out'}/", "-s", "256",
                                                      "--engine", "ray", "--ray-address", cluster])
    assert returncode == 0, text
    assert "/6 [" in text and "<" in text and "file/s]" in text  # tqdm: "n/6 [elapsed<left, rate file/s]"
    assert "6 of 6 files" in text and "(2 workers, Ray)" in text
