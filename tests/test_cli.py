import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tinycodec import __version__
from tinycodec.cli import main, tcdec, tcenc

from .conftest import photo_like, psnr


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(photo_like(45, 61)).save(path)
    return path


def run(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args])


def test_round_trip_with_defaults(png, tmp_path):
    r = run(tcenc, [png])
    assert r.exit_code == 0, r.output
    assert "bpp" in r.output
    tcz = tmp_path / "in.tcz"
    assert tcz.exists()
    r = run(tcdec, [tcz, "-o", tmp_path / "out.png"])  # in.png exists: the default name is refused
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "out.png")
    assert out.size == (61, 45)


def test_options_and_output_formats(png, tmp_path):
    assert run(tcenc, [png, "-s", "4", "--planes", "6", "-o", tmp_path / "a.tcz", "-q"]).output == ""
    for ext in ("png", "bmp", "webp", "tiff"):
        r = run(tcdec, [tmp_path / "a.tcz", "-o", tmp_path / f"a.{ext}", "--enhance", "none"])
        assert r.exit_code == 0, r.output
        assert Image.open(tmp_path / f"a.{ext}").size == (61, 45)


def test_never_overwrites_without_force(png, tmp_path):
    assert run(tcenc, [png]).exit_code == 0
    r = run(tcenc, [png, "-s", "4"])
    assert r.exit_code == 1 and "already exists (use -f to overwrite)" in r.output
    assert run(tcenc, [png, "-s", "4", "-f"]).exit_code == 0
    # the default decode name is the original's name: refused, the original survives
    before = png.read_bytes()
    r = run(tcdec, [tmp_path / "in.tcz"])
    assert r.exit_code == 1 and "already exists" in r.output
    assert png.read_bytes() == before


def test_outputs_get_normal_permissions(png, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        assert run(tcenc, [png, "-o", tmp_path / "p.tcz"]).exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "p.tcz").stat().st_mode & 0o777 == 0o644


def test_version_and_help():
    for cmd in (tcenc, tcdec, main):
        assert __version__ in run(cmd, ["--version"]).output
        assert run(cmd, ["--help"]).exit_code == 0


@pytest.mark.parametrize("args,message", [
    (["--enhance", "sharpen"], "unknown enhancement filter 'sharpen'"),
    (["-o", "{tmp}/out.xyz"], "unknown output image format"),
])
def test_tcdec_user_errors(png, tmp_path, args, message):
    run(tcenc, [png, "-o", tmp_path / "a.tcz"])
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run(tcdec, [tmp_path / "a.tcz", *[a.format(tmp=tmp_path) for a in args]])
    assert r.exit_code == 1 and message in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_inputs_give_one_line_and_no_output(tmp_path, png):
    (tmp_path / "bad.tcz").write_bytes(b"\x89TCZ\r\n\x1a\n" + bytes(80))
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [
        (tcdec, [tmp_path / "bad.tcz", "-o", tmp_path / "o1.png"], "corrupt"),
        (tcdec, [tmp_path / "missing.tcz", "-o", tmp_path / "o2.png"], "no such file"),
        (tcdec, [png, "-o", tmp_path / "o3.png"], "not a .tcz file"),
        (tcenc, [tmp_path / "notes.txt", "-o", tmp_path / "o4.tcz"], "not an image"),
        (tcenc, [tmp_path, "-o", png], "is not a folder"),  # a folder input is a batch: -o must be a folder
        (tcenc, [png, "-o", tmp_path / "no" / "such" / "dir.tcz"], "No such file or directory"),
    ]
    for cmd, args, message in cases:
        r = run(cmd, args)
        assert r.exit_code == 1, r.output
        assert message in r.output and r.output.count("\n") == 1, r.output
        assert "Traceback" not in r.output
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


def test_real_processes_pipe_and_exit_codes(png, tmp_path):
    """stdin -> tcenc -> stdout -> tcdec -> stdout PNG, as installed entry points."""
    exe = [sys.executable, "-c"]
    enc = subprocess.run([*exe, "from tinycodec.cli import tcenc; tcenc()", "-", "-s", "64"],
                         input=png.read_bytes(), capture_output=True, check=True)
    assert enc.stdout.startswith(b"\x89TCZ")
    dec = subprocess.run([*exe, "from tinycodec.cli import tcdec; tcdec()", "-"],
                         input=enc.stdout, capture_output=True, check=True)
    assert dec.stdout.startswith(b"\x89PNG")
    bad = subprocess.run([*exe, "from tinycodec.cli import tcdec; tcdec()", "-", "-o", str(tmp_path / "x.png")],
                         input=enc.stdout[:-5], capture_output=True)
    assert bad.returncode == 1
    assert bad.stderr.decode().strip().startswith("tcdec: error: truncated")
    assert b"Traceback" not in bad.stderr
    assert not (tmp_path / "x.png").exists()


def test_demo_on_a_given_image(png, tmp_path):
    r = run(main, ["demo", "--image", png, "-o", tmp_path / "demo"])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines()[2:]]
    tinycompress = [row for row in rows if row[0].startswith("s") and row[1].startswith("p")]
    assert len(tinycompress) == 5 and len(rows) == 13  # and 4 qualities of each rate-distortion family
    assert [row[0] for row in rows[5:]] == ["shallow"] * 4 + ["pyramid"] * 4
    assert all(float(row[4]) > 15 for row in tinycompress)  # PSNR column (the setting is two words)
    assert (tmp_path / "demo" / "demo-s16-p8.tcz").exists()
    ref = np.asarray(Image.open(png))
    assert psnr(ref, np.asarray(Image.open(tmp_path / "demo" / "demo-s4-p8.png"))) == pytest.approx(float(rows[0][4]), abs=0.01)
    # JPEG's PSNR at the file's bpp, from the same image, where JPEG reaches that bpp
    assert any(row[5] != "nan" and float(row[5]) > 15 for row in tinycompress)


def test_strings_from_files_and_file_names_are_escaped_on_the_terminal(tmp_path):
    """One error is one line: a newline or an escape sequence in a name is printed escaped."""
    from tinycodec.errors import printable

    assert printable("a\nb\x1b[2J\u2028c") == "a\\nb\\x1b[2J\\u2028c"
    assert printable("plain 'name' é") == "plain 'name' é"
    r = run(tcdec, [tmp_path / "x\ntcdec: note: forged\x1b[2J.tcz", "-o", tmp_path / "o.png"])
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "\x1b" not in r.output and "\\ntcdec: note: forged\\x1b[2J" in r.output


def test_decoded_webp_is_lossless_like_png(png, tmp_path):
    """Issue 35: tcdec --format webp wrote lossy WebP silently; decoded output is lossless where it can be."""
    tcz = tmp_path / "a.tcz"
    assert run(tcenc, [png, "-o", tcz]).exit_code == 0
    assert run(tcdec, [tcz, "-o", tmp_path / "a.png"]).exit_code == 0
    assert run(tcdec, [tcz, "-o", tmp_path / "a.webp"]).exit_code == 0
    a = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    b = np.asarray(Image.open(tmp_path / "a.webp").convert("RGB"))
    assert (a == b).all()
