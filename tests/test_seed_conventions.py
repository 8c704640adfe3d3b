"""tools/seed_conventions.py: the JPEG sweep and the best-PSNR-at-a-rate lookup behind the model card's claim."""

import numpy as np
import pytest

from .conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("seed_conventions")


def test_best_psnr_at_a_rate_takes_only_settings_at_or_below_it(tool):
    points = [(0.5, 30.0, 33.0), (1.0, 34.0, 38.0), (1.5, 36.0, 41.0)]
    assert tool.best_at(points, 0.4, 1) is None
    assert tool.best_at(points, 1.0, 1) == 34.0  # a setting exactly at the rate counts
    assert tool.best_at(points, 1.2, 2) == 38.0
    assert tool.best_at(points, 9.0, 2) == 41.0


def test_jpeg_sweep_spans_rates_and_luma_psnr_is_its_own_measure(tool):
    y, x = np.mgrid[0:128, 0:192]  # large enough that the JPEG headers are not most of the bits
    rgb = np.stack([x, y * 2, (x + y) % 256], -1).astype(np.uint8)
    points = tool.jpeg_points(rgb)
    assert len(points) == 2 * len(tool.QUALITIES)
    rates = [p[0] for p in points]
    assert min(rates) < 1.0 < max(rates)
    best = max(points, key=lambda p: p[0])  # quality 100: close to the image on both measures
    assert best[1] > 35 and best[2] > 35
    assert any(abs(p[1] - p[2]) > 0.1 for p in points)  # RGB and Y PSNR are computed separately
