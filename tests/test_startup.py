"""What a command imports: --help, -V, usage and file errors answer without PyTorch, and decoding imports
only what it runs. Checked on sys.modules of a fresh interpreter, never on time (tools/bench_startup.py
measures the time)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# This checkout first, whatever else the environment puts on the path.
_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
HEAVY = ("torch", "onnxruntime", "onnx", "numpy", "tqdm", "matplotlib", "safetensors", "constriction")

_PROBE = """
import json, sys
from tinycodec.cli import {command} as command
try:
    command({args!r})
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
families = sorted(m for m in sys.modules if m.startswith(("tinycodec.pyramid", "tinycodec.shallow")))
print("\\n" + json.dumps({{"code": code, "heavy": heavy, "families": families}}))
"""


def probe(command: str, *args, cwd: Path = ROOT) -> dict:
    """Run a command of tinycodec.cli in a fresh interpreter; its exit code and the heavy modules it loaded."""
    script = _PROBE.format(command=command, args=[str(a) for a in args], heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=_ENV)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command, args", [
    ("tcenc", ["--help"]), ("tcdec", ["--help"]), ("main", ["--help"]), ("main", ["rd", "--help"]),
    ("tcenc", ["-V"]), ("tcdec", ["--version"]), ("main", ["-V"]),
    ("tcenc", []),  # a missing argument
    ("tcenc", ["x.png", "-s", "5"]),  # a bad choice
    ("tcdec", ["x.tcz", "--planes", "3"]),  # an unknown option
])
def test_help_version_and_usage_errors_import_nothing_heavy(command, args):
    out = probe(command, *args)
    assert out["code"] == (0 if any(a in ("--help", "-V", "--version") for a in args) else 2)
    assert out["heavy"] == []
    assert out["families"] == []


def test_file_errors_answer_without_pytorch(tmp_path):
    for command, name in (("tcdec", "missing.tcz"), ("tcenc", "missing.png")):
        out = probe(command, tmp_path / name, "-o", tmp_path / "out")
        assert out["code"] == 1
        assert not {"torch", "onnxruntime", "onnx"} & set(out["heavy"])
    (tmp_path / "junk.tcz").write_bytes(b"not a tcz file at all")
    out = probe("tcdec", tmp_path / "junk.tcz", "-o", tmp_path / "out.png")
    assert out["code"] == 1 and not {"torch", "onnxruntime"} & set(out["heavy"])


def test_decoding_imports_only_what_it_runs(tmp_path):
    import numpy as np
    from PIL import Image

    import tinycodec

    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    (tmp_path / "tc.tcz").write_bytes(tinycodec.encode(rgb, scale=16))
    out = probe("tcdec", tmp_path / "tc.tcz", "-o", tmp_path / "tc.png")
    assert out["code"] == 0
    # The networks run in numpy where PyTorch is not loaded (backends.AUTO_TORCH_ON_CPU, pyramid.codec.synthesise).
    assert out["heavy"] == ["constriction", "numpy", "safetensors"]
    assert out["families"] == []  # the header's family check needs no family package
    for family in ("shallow", "pyramid"):
        (tmp_path / f"{family}.tcz").write_bytes(tinycodec.encode(rgb, quality=50, family=family))
        out = probe("tcdec", tmp_path / f"{family}.tcz", "-o", tmp_path / f"{family}.png")
        assert out["code"] == 0 and out["heavy"] == ["constriction", "numpy", "safetensors"]
        assert f"tinycodec.{family}.model" not in out["families"]  # the PyTorch networks
        assert not [m for m in out["families"] if not m.startswith(f"tinycodec.{family}")]
    Image.fromarray(rgb).save(tmp_path / "in.png")
    out = probe("tcenc", tmp_path / "in.png", "-o", tmp_path / "in.tcz")
    assert out["code"] == 0 and out["heavy"] == ["constriction", "numpy", "safetensors"]


def test_import_tinycodec_is_light_and_the_api_loads_on_use():
    script = """
import sys
import tinycodec
light = not {"numpy", "torch", "tinycodec.codec"} & set(sys.modules)
from tinycodec import codec  # the submodule binds tinycodec.enhance? it must stay the function
import tinycodec.enhance
assert callable(tinycodec.enhance) and tinycodec.enhance.__module__ == "tinycodec.enhance"
assert tinycodec.decode is codec.decode and tinycodec.backends.BACKENDS[0] == "auto"
assert sorted(tinycodec.__all__) == sorted(n for n in tinycodec.__all__ if hasattr(tinycodec, n))
print(light)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_python_m_tinycodec_is_the_tinycodec_command():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tinycodec", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=_ENV)
    assert done.returncode == 0 and done.stdout.startswith("Usage: tinycodec ")
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "numpy", "onnxruntime"} & imported
