"""Test images are made here: the suite never needs ../shared."""

from __future__ import annotations

import importlib.util
import os
import pty
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str) -> ModuleType:
    """Import tools/<name>.py (a script, not part of the package) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Built ONNX graphs go to a cache of the test session's own, never the user's ~/.cache."""
    import os

    path = tmp_path_factory.mktemp("tinycodec-cache")
    old = os.environ.get("TINYCODEC_CACHE")
    os.environ["TINYCODEC_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TINYCODEC_CACHE", None)
    else:
        os.environ["TINYCODEC_CACHE"] = old


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, photograph-like RGB image: gradients, soft blobs, an edge and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y /= max(height - 1, 1)
    x /= max(width - 1, 1)
    img = np.zeros((height, width, 3))
    for c in range(3):
        img[:, :, c] = 0.3 + 0.4 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))
        for _ in range(4):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
            img[:, :, c] += rng.uniform(-0.3, 0.3) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / r**2)
    img[:, : width // 3] += 0.15  # a hard vertical edge
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    return photo_like(96, 128)


def run_with_stderr_on_a_terminal(args: list, timeout: float = 120) -> tuple[int, str]:
    """Run ``args`` (a tinycodec command name, then its arguments) as a real process whose stderr is a
    terminal, stdout a pipe; returns its exit status and what it wrote to the terminal."""
    master, slave = pty.openpty()
    cmd = [sys.executable, "-c", f"from tinycodec.cli import {args[0]}; {args[0]}()", *map(str, args[1:])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env,
                          timeout=timeout)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")
