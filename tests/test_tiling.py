"""Window-by-window network inference: same result as one window, any window size."""

import numpy as np
import pytest

from tinycodec import decode, encode, runtime, tiling
from tinycodec.models import SCALE_DEPTHS
from tinycodec.zoo import current_entry, model_name

from .conftest import photo_like, psnr


def test_spans_cover_the_axis_once():
    for length, core, halo in [(1, 8, 3), (100, 32, 6), (96, 32, 0), (7, 1, 2)]:
        spans = tiling.spans(length, core, halo)
        assert [s.start for s in spans] == list(range(0, length, core))
        assert spans[-1].stop == length
        assert all(a.stop == b.start for a, b in zip(spans, spans[1:]))
        assert all(0 <= s.outer_start <= s.start and s.stop <= s.outer_stop <= length for s in spans)
        assert all(s.start - s.outer_start in (halo, s.start) for s in spans)


def test_halos():
    assert [tiling.encoder_halo(k) for k in (1, 2, 3, 4)] == [6, 20, 48, 96]  # 6 (2^k - 1), rounded up to 2^k
    assert [tiling.decoder_halo(k) for k in (1, 2, 3, 4)] == [2, 3, 4, 4]


def test_crop_replicated_matches_padding():
    img = photo_like(13, 11)
    padded = np.pad(img, ((0, 3), (0, 5), (0, 0)), mode="edge")
    assert np.array_equal(tiling.crop_replicated(img, (4, 16), (2, 16)), padded[4:16, 2:16])
    assert np.array_equal(tiling.crop_replicated(img, (0, 13), (0, 11)), img)
    with pytest.raises(ValueError):
        tiling.crop_replicated(img, (13, 16), (0, 4))


@pytest.mark.parametrize("scale", sorted(SCALE_DEPTHS))
def test_windowed_inference_equals_one_window(scale):
    depth = SCALE_DEPTHS[scale]
    step = 1 << depth
    img = photo_like(101, 157, seed=3)
    entry = current_entry(model_name(scale))
    padded = np.pad(img, ((0, -101 % step), (0, -157 % step), (0, 0)), mode="edge")
    whole = runtime.run_encoder(entry, scale, padded)
    windowed = tiling.encode_latent(entry, scale, depth, img, window=2 * step)  # the smallest windows
    assert windowed.shape == whole.shape
    # identical computation; only the convolution routines' summation order differs
    assert np.abs(windowed - whole).max() <= 1e-5 * max(1.0, np.abs(whole).max())

    decoded = runtime.run_decoder(entry, scale, whole)
    out = np.zeros_like(decoded)
    for y, x, block in tiling.decode_windows(entry, scale, depth, lambda r, c: whole[:, r[0]:r[1], c[0]:c[1]],
                                              whole.shape[1:], window=step):
        out[y : y + block.shape[0], x : x + block.shape[1]] = block
    diff = np.abs(out.astype(int) - decoded)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # a rare rounding flip of one level


def test_too_small_a_halo_would_show():
    """The halo is needed: without it the windows' borders differ (this guards the test above)."""
    scale, depth = 4, 1
    img = photo_like(64, 64)
    entry = current_entry(model_name(scale))
    whole = runtime.run_encoder(entry, scale, img)
    original = tiling.encoder_halo
    try:
        tiling.encoder_halo = lambda d: 0
        seams = tiling.encode_latent(entry, scale, depth, img, window=16)
    finally:
        tiling.encoder_halo = original
    assert np.abs(seams - whole).max() > 0.01


def test_codec_with_small_windows_and_tiles(photo):
    """Coding through many small windows and tiles changes the image by (almost) nothing."""
    reference = np.asarray(decode(encode(photo, scale=16)))
    small = encode(photo, scale=16, tile=8, window=32)
    out = np.asarray(decode(small, window=32))
    assert abs(psnr(photo, out) - psnr(photo, reference)) < 0.01
    assert np.abs(out.astype(int) - reference).max() <= 2


def test_bad_window_arguments(photo):
    with pytest.raises(ValueError):
        encode(photo, window=0)
    with pytest.raises(ValueError):
        decode(encode(photo), workers=0)


def test_tiles_coded_on_worker_processes_give_the_same_file(monkeypatch):
    img = photo_like(48, 64, seed=2)
    serial = encode(img, scale=4, tile=8)  # 24 x 32 latent: 12 tiles
    assert encode(img, scale=4, tile=8, workers=2) == serial  # spawned processes (a few seconds to start)
    # The decoder's side of the same plumbing, on threads: starting processes again would only cost time.
    from concurrent.futures import ThreadPoolExecutor

    from tinycodec import parallel

    monkeypatch.setattr(parallel, "process_pool", lambda n: ThreadPoolExecutor(n))
    assert np.array_equal(np.asarray(decode(serial, workers=2)), np.asarray(decode(serial)))


def test_rgba_tiles_decode_in_one_pool(monkeypatch):
    """Colour and alpha tiles share one worker pool (each spawned pool costs seconds to start)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from tinycodec import parallel

    rgb = photo_like(48, 64, seed=3)
    alpha = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    data = encode(rgba, scale=4, tile=8)
    pools = []

    def counting_pool(n):
        pools.append(n)
        return ThreadPoolExecutor(n)

    monkeypatch.setattr(parallel, "process_pool", counting_pool)
    out = decode(data, workers=2)
    assert len(pools) == 1
    assert np.array_equal(np.asarray(out), np.asarray(decode(data)))
    assert np.array_equal(np.asarray(out)[..., 3], alpha)  # alpha is lossless
