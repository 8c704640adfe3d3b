"""Crash-safe output: real tcenc/tcdec processes stopped in the middle of writing.

The test hook TINYCODEC_TEST_PAUSE_MID_WRITE makes write_atomic write half of
its output, then sleep, so a signal lands mid-write every time. Whatever stops
the process, the final name holds either nothing, the complete new file or the
untouched old one, and the input is never modified.
"""

import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tinycodec
from tinycodec import files
from tinycodec.cli import tcdec, tcenc

from .conftest import photo_like

ROOT = Path(__file__).resolve().parent.parent


def _env(pause: float | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop(files.PAUSE_MID_WRITE_ENV, None)
    if pause is not None:
        env[files.PAUSE_MID_WRITE_ENV] = str(pause)
    return env


def _cli(prog: str) -> list[str]:
    return [sys.executable, "-c", f"from tinycodec.cli import {prog}; {prog}()"]


def _start(prog: str, args: list, cwd: Path, pause: float | None = 60, **kw) -> subprocess.Popen:
    return subprocess.Popen([*_cli(prog), *map(str, args)], cwd=cwd, env=_env(pause), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(files.TEMP_SUFFIX))


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {what}: {proc.communicate()[1].decode()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _mid_write(folder: Path) -> bool:
    return any(p.stat().st_size > 0 for p in _temps(folder))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _prepare(folder: Path) -> Path:
    """A folder with a PNG and its .tcz."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo_like(48, 64, seed=3)).save(folder / "in.png")
    (folder / "in.tcz").write_bytes(tinycodec.encode(photo_like(48, 64, seed=3), scale=4))
    return folder


@pytest.fixture
def work(tmp_path):
    return _prepare(tmp_path)


def _limit_file_size(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail EFBIG

    return preexec


@dataclass
class Scenario:
    folder: Path
    proc: subprocess.Popen
    before: dict[str, str]  # sha256 of every file in the folder when the process started


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Every real-process scenario, started at once: most of their time is importing torch, which
    the two cores then do side by side. Each test below finishes one of them."""
    scenarios = {}

    def launch(name, cmd, prepare=None, **kw):
        folder = _prepare(tmp_path_factory.mktemp(name))
        if prepare:
            prepare(folder)
        before = {p.name: _digest(p) for p in folder.iterdir()}
        kw.setdefault("env", _env(60))
        scenarios[name] = Scenario(folder, subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE,
                                                            stderr=subprocess.PIPE, **kw), before)

    def three_pngs(folder):
        for name in "abc":
            Image.fromarray(photo_like(40, 56, seed=ord(name))).save(folder / f"{name}.png")

    def old_output(name):
        return lambda folder: (folder / name).write_bytes(b"the previous output, complete")

    # the batch chain is the longest (two imports in a row): start it first
    script = (f'for f in a b c; do [ "$f" = b ] && export {files.PAUSE_MID_WRITE_ENV}=60; '
              f'"$@" $f.png -s 64 -q || exit $?; done')
    launch("batch", ["sh", "-c", script, "sh", *_cli("tcenc")], three_pngs, env=_env(None), start_new_session=True)
    launch("tcenc-sigterm", [*_cli("tcenc"), "in.png", "-o", "out.tcz", "-f"], old_output("out.tcz"))
    launch("tcdec-sigint", [*_cli("tcdec"), "in.tcz", "-o", "out.png", "-f"], old_output("out.png"))
    launch("tcenc-sigkill", [*_cli("tcenc"), "in.png", "-o", "out.tcz"])
    launch("tcdec-disk-full", [*_cli("tcdec"), "in.tcz", "-o", "out.bmp"], env=_env(None),
           preexec_fn=_limit_file_size(2000))
    yield scenarios
    for s in scenarios.values():
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


@pytest.mark.parametrize("name,sig,status,message", [
    ("tcenc-sigterm", signal.SIGTERM, 143, "tcenc: error: stopped by SIGTERM"),
    ("tcdec-sigint", signal.SIGINT, 130, "tcdec: error: interrupted"),
])
def test_signal_mid_write_leaves_old_output_and_input_untouched(launched, name, sig, status, message):
    s = launched[name]
    _wait_for(lambda: _mid_write(s.folder), s.proc, "the write to start")
    s.proc.send_signal(sig)
    _, err = s.proc.communicate(timeout=60)
    assert s.proc.returncode == status
    assert err.decode().splitlines() == [message]  # one line, no traceback
    assert _temps(s.folder) == []  # the temporary file was removed on the way out
    assert {p.name: _digest(p) for p in s.folder.iterdir()} == s.before  # old output and input as they were


def test_sigkill_mid_write_leaves_only_a_hidden_temporary_file(launched):
    """SIGKILL cannot be caught: the temporary file stays, but hidden and clearly named, never as out.tcz."""
    s = launched["tcenc-sigkill"]
    _wait_for(lambda: _mid_write(s.folder), s.proc, "the write to start")
    s.proc.kill()
    s.proc.communicate(timeout=60)
    assert not (s.folder / "out.tcz").exists()
    [temp] = _temps(s.folder)
    assert temp.name.startswith(".out.tcz.")
    assert {p.name: _digest(p) for p in s.folder.iterdir() if p != temp} == s.before


def test_stopping_a_batch_leaves_only_complete_files(launched):
    """A shell loop over three images, stopped (SIGTERM to the whole process group) while the
    second output is half written: the first output is complete, nothing else was left."""
    s = launched["batch"]
    _wait_for(lambda: (s.folder / "a.tcz").exists() and _mid_write(s.folder), s.proc, "the second write")
    os.killpg(s.proc.pid, signal.SIGTERM)
    s.proc.communicate(timeout=60)
    assert _temps(s.folder) == []
    outputs = sorted(p.name for p in s.folder.glob("*.tcz") if p.name != "in.tcz")
    assert outputs == ["a.tcz"]
    assert tinycodec.decode((s.folder / "a.tcz").read_bytes()).size == (56, 40)
    assert all(_digest(s.folder / name) == digest for name, digest in s.before.items())


def test_disk_full_real_process(launched):
    """A write that fails half-way (here: RLIMIT_FSIZE, EFBIG) ends in one line, exit 1, and no file."""
    s = launched["tcdec-disk-full"]
    _, err = s.proc.communicate(timeout=120)
    assert s.proc.returncode == 1
    assert err.decode().splitlines() == ["tcdec: error: File too large: out.bmp"]
    assert not (s.folder / "out.bmp").exists() and _temps(s.folder) == []


@pytest.mark.skipif(getattr(tcenc.params[0], "nargs", 1) != -1, reason="tcenc has no batch mode on this branch")
def test_stopping_batch_mode_leaves_only_complete_files(tmp_path):
    """`tcenc *.png -o outdir/` (batch mode, another branch) stopped in its second write."""
    for name in "abc":
        Image.fromarray(photo_like(40, 56, seed=ord(name))).save(tmp_path / f"{name}.png")
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = _start("tcenc", ["a.png", "b.png", "c.png", "-s", "64", "-q", "-o", "out/"], tmp_path, pause=2)
    _wait_for(lambda: any(not p.name.startswith(".") for p in outdir.iterdir()) and _mid_write(outdir), proc,
              "the second write")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert _temps(outdir) == []
    finished = list(outdir.iterdir())
    assert finished and all(tinycodec.decode(p.read_bytes()).size == (56, 40) for p in finished)


def test_disk_full_in_process(work, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(work / "out.tcz")])
    assert r.exit_code == 1 and r.output == f"tcenc: error: No space left on device: {work / 'out.tcz'}\n"
    assert not (work / "out.tcz").exists() and _temps(work) == []


def test_an_exception_mid_batch_keeps_earlier_outputs_and_leaves_no_temporary(tmp_path, monkeypatch):
    """write_atomic, which every CLI output goes through, failing on the third of four files."""
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise RuntimeError("boom")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    written = []
    with pytest.raises(RuntimeError):
        for i in range(4):
            files.write_atomic(tmp_path / f"{i}.bin", bytes([i]) * 100)
            written.append(i)
    assert written == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.bin", "1.bin"]


def test_output_that_is_the_input_under_another_name_is_refused(work):
    """-f must never let tcenc overwrite its own input, whatever the spelling: ./x, a symlink, a hard link."""
    before = _digest(work / "in.png")
    (work / "link.png").symlink_to(work / "in.png")
    os.link(work / "in.png", work / "hard.png")
    for out in (work / "." / "in.png", work / "link.png", work / "hard.png", work / "sub" / ".." / "in.png"):
        (work / "sub").mkdir(exist_ok=True)
        r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(out), "-f"])
        assert r.exit_code == 1 and "output and input are the same file" in r.output, (out, r.output)
    assert _digest(work / "in.png") == before


def test_atomic_writes_of_images_and_bytes_leave_no_temporaries(tmp_path):
    files.write_atomic(tmp_path / "a.bin", b"x" * 10)
    files.write_atomic(tmp_path / "b.png", image=Image.fromarray(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(tinycodec.TinyCodecError):
        files.save_image(Image.fromarray(np.zeros((4, 4, 2), np.uint8)[:, :, 0]).convert("LA"), tmp_path / "c.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.png"]
    long_name = "n" * 250 + ".tcz"  # the temporary name must still fit NAME_MAX
    files.write_atomic(tmp_path / long_name, b"y")
    assert (tmp_path / long_name).read_bytes() == b"y"


@pytest.mark.parametrize("prog,args", [("tcenc", ["in.png", "-s", "4"]), ("tcdec", ["in.tcz"])])
def test_stdout_short_writes_and_full_disk_fail_with_one_line(work, prog, args):
    """`-o -` with an unbuffered stdout (python -u, PYTHONUNBUFFERED=1): a write cut short by
    RLIMIT_FSIZE, or refused by a full device, is an error, never a silent truncation."""
    env = {**_env(None), "PYTHONUNBUFFERED": "1"}
    with open(work / "out", "wb") as out:
        proc = subprocess.run([*_cli(prog), *args, "-o", "-", "-q"], cwd=work, env=env, stdout=out,
                              stderr=subprocess.PIPE, preexec_fn=_limit_file_size(1000), timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [f"{prog}: error: File too large: <stdout>"]
    if os.path.exists("/dev/full"):
        with open("/dev/full", "wb") as out:
            proc = subprocess.run([*_cli(prog), *args, "-o", "-", "-q"], cwd=work, env=env, stdout=out,
                                  stderr=subprocess.PIPE, timeout=120)
        assert proc.returncode == 1
        assert proc.stderr.decode().splitlines() == [f"{prog}: error: No space left on device: <stdout>"]


def test_write_fully_loops_over_short_writes():
    class Trickle:
        def __init__(self):
            self.got = bytearray()

        def write(self, b):
            self.got += bytes(b[:3])
            return min(3, len(b))

        def flush(self):
            pass

    t = Trickle()
    files.write_fully(t, b"0123456789")
    assert bytes(t.got) == b"0123456789"

    class Stuck(Trickle):
        def write(self, b):
            return 0

    with pytest.raises(OSError, match="x.tcz"):
        files.write_fully(Stuck(), b"abc", "x.tcz")


def test_racing_writers_without_force_one_wins_one_fails(work):
    """Two tcenc without -f to one output: the check happens when the file is put in place
    (link(), which fails if the name exists), not long before: exactly one succeeds."""
    Image.fromarray(photo_like(48, 64, seed=4)).save(work / "b.png")
    procs = [_start("tcenc", [name, "-o", "x.tcz", "-s", "64"], work, pause=3) for name in ("in.png", "b.png")]
    results = [(p.wait(timeout=120), p.communicate()[1].decode()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert loser.splitlines() == ["tcenc: error: x.tcz already exists (use -f to overwrite)"]
    assert tinycodec.decode((work / "x.tcz").read_bytes()).size == (64, 48) and _temps(work) == []


def test_a_file_that_appears_during_the_write_is_never_replaced_without_force(tmp_path, monkeypatch):
    target = tmp_path / "out.tcz"
    real_fsync = os.fsync

    def rival_writes_first(fd):
        real_fsync(fd)
        target.write_bytes(b"the rival's output")

    monkeypatch.setattr(os, "fsync", rival_writes_first)
    with pytest.raises(tinycodec.TinyCodecError, match="out.tcz already exists"):
        files.write_atomic(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"the rival's output" and _temps(tmp_path) == []


def test_special_files_are_written_through_never_replaced(work):
    """A FIFO or /dev/null at the output path is written into (with or without -f) and stays what
    it was; a symlink is followed (its target written, the link kept); a dangling one, a folder
    or a terminal is refused with one line."""
    import stat
    import threading

    fifo = work / "fifo.tcz"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(fifo), "-f", "-q"])
    reader.join(60)
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and tinycodec.decode(got[0]).size == (64, 48)
    null = "/dev/null"
    if os.geteuid() == 0:  # root could replace the system's /dev/null: use a copy of it
        null = str(work / "null")
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for force in ([], ["-f"]):
        r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", null, "-q", *force])
        assert r.exit_code == 0, r.output
        assert stat.S_ISCHR(os.lstat(null).st_mode)

    dangling = work / "dangling.tcz"
    dangling.symlink_to(work / "nowhere.tcz")
    for force in ([], ["-f"]):
        r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(dangling), *force])
        assert r.exit_code == 1 and r.output == f"tcenc: error: {dangling} is a dangling symbolic link: not writing through it\n"
        assert dangling.is_symlink() and not (work / "nowhere.tcz").exists()

    (work / "real.tcz").write_bytes(b"old")
    link = work / "link.tcz"
    link.symlink_to(work / "real.tcz")
    r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(link)])
    assert r.exit_code == 1 and "already exists" in r.output
    r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(link), "-f", "-q"])
    assert r.exit_code == 0 and link.is_symlink() and tinycodec.decode((work / "real.tcz").read_bytes())

    (work / "folder.tcz").mkdir()
    with pytest.raises(tinycodec.TinyCodecError, match="folder.tcz is a folder"):  # (tcenc -o: writes into it)
        files.write_atomic(work / "folder.tcz", b"x")
    master, slave = os.openpty()
    try:
        with pytest.raises(tinycodec.TinyCodecError, match="is a terminal"):
            files.write_atomic(os.ttyname(slave), b"binary")
    finally:
        os.close(master)
        os.close(slave)


def test_errors_name_the_users_path_never_the_temporary(work, monkeypatch):
    def denied(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), src, dst)

    monkeypatch.setattr(os, "replace", denied)
    r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(work / "out.tcz"), "-f"])
    assert r.exit_code == 1 and r.output == f"tcenc: error: Permission denied: {work / 'out.tcz'}\n"
    monkeypatch.undo()
    (work / "plain").write_bytes(b"")
    r = CliRunner().invoke(tcenc, [str(work / "in.png"), "-o", str(work / "plain") + "/"])
    assert r.exit_code == 1 and r.output.splitlines() == [
        f"tcenc: error: -o {work / 'plain'}/ names a folder, but {work / 'plain'} exists and is not one"]


def test_temporaries_left_by_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".out.tcz.{dead.pid}-{files._host_tag()}.abcd1234.part"
    older_orphan = tmp_path / f".out.tcz.{dead.pid}.abcd1234.part"  # named without a host
    alive = tmp_path / f".out.tcz.{os.getppid()}-{files._host_tag()}.abcd1234.part"
    other_host = tmp_path / f".out.tcz.{dead.pid}-{int(files._host_tag(), 16) ^ 1:08x}.abcd1234.part"
    unrelated = tmp_path / ".notes.part"
    for p in (orphan, older_orphan, alive, other_host, unrelated):
        p.write_bytes(b"half")
    files.write_atomic(tmp_path / "other.tcz", b"x")
    assert not orphan.exists() and not older_orphan.exists()
    assert alive.exists() and unrelated.exists()
    assert other_host.exists()  # a cluster node sharing the folder: its PIDs mean nothing here


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_when_tcdec_is_killed(tmp_path):
    """tcdec -j 2 killed with SIGKILL: its spawned workers and the resource tracker go too."""
    (tmp_path / "big.tcz").write_bytes(tinycodec.encode(photo_like(256, 384, seed=5), scale=4, tile=8))
    proc = subprocess.Popen([*_cli("tcdec"), "big.tcz", "-o", "out.png", "-j", "2"], cwd=tmp_path, env=_env(None),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(_children(proc.pid)) >= 3, proc, "the pool's workers", timeout=120)
    time.sleep(1)
    children = _children(proc.pid)
    proc.kill()
    proc.wait()
    end = time.monotonic() + 20
    while any(_running(pid) for pid in children) and time.monotonic() < end:
        time.sleep(0.2)
    left = [pid for pid in children if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} of {len(children)} children outlived their parent by 20 s"
