"""A non-editable install finds its weights (package data), far from the source tree."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _can_build_without_isolation() -> bool:
    """The running environment's setuptools meets pyproject's build requirement and can make wheels.

    A fresh venv seeds an older setuptools without ``bdist_wheel`` (Python 3.11: 65.5); there pip
    must build in an isolated environment (fetching setuptools from the configured index) instead.
    """
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    if major < 68:
        return False
    if (major, minor) >= (70, 1):  # bdist_wheel moved into setuptools
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_wheel_install_ships_weights(tmp_path):
    target = tmp_path / "site"
    isolation = ["--no-build-isolation"] if _can_build_without_isolation() else []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation,
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    code = ("import tinycodec, numpy as np; from tinycodec.zoo import weights_dir; "
            "print(weights_dir()); d = tinycodec.encode(np.zeros((9, 9, 3), np.uint8), scale=64); "
            "print(tinycodec.decode(d).size)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env).stdout.split("\n")
    assert out[0].startswith(str(target))
    assert out[1] == "(9, 9)"
