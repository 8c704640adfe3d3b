import numpy as np
import pytest
import torch

from tinycodec.quantize import dequantize, fake_quantize, latent_range, quantize


@pytest.mark.parametrize("planes", range(1, 9))
def test_training_quantiser_equals_product_quantiser(planes):
    latent = np.random.default_rng(planes).normal(size=(3, 9, 7)).astype(np.float32)
    lo, hi = latent_range(latent)
    product = dequantize(quantize(latent, lo, hi, planes), lo, hi, planes)
    training = fake_quantize(torch.from_numpy(latent)[None], torch.tensor([planes]))[0].numpy()
    np.testing.assert_allclose(product, training, atol=1e-5)


def test_training_quantiser_passes_the_cost_of_a_wider_range_to_its_extremes():
    """Straight-through for every element, plus the gradient of the range through min and max."""
    torch.manual_seed(0)
    latent = torch.randn(1, 1, 16, 16, requires_grad=True)
    out = fake_quantize(latent, torch.tensor([3]))
    target = latent.detach().clone()
    ((out - target) ** 2).sum().backward()  # the loss is the quantisation error alone
    grad = latent.grad.flatten()
    extremes = {int(latent.detach().flatten().argmin()), int(latent.detach().flatten().argmax())}
    inner = [i for i in range(grad.numel()) if i not in extremes]
    # inner elements see the identity gradient of their own error
    assert torch.allclose(grad[inner], 2 * (out - target).detach().flatten()[inner], atol=1e-6)
    # shrinking the range lowers the error: the minimum is pushed up, the maximum down
    assert grad[int(latent.detach().flatten().argmin())] < 0 < grad[int(latent.detach().flatten().argmax())]


def test_error_halves_with_each_plane():
    latent = np.random.default_rng(0).uniform(size=(3, 32, 32)).astype(np.float32)
    lo, hi = latent_range(latent)
    errors = [np.abs(dequantize(quantize(latent, lo, hi, p), lo, hi, p) - latent).max() for p in range(1, 9)]
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < coarse * 0.6
    assert errors[-1] <= (hi - lo).max() / 255 / 2 + 1e-6


def test_flat_channel_is_finite():
    latent = np.zeros((3, 4, 4), np.float32)
    lo, hi = latent_range(latent)
    out = dequantize(quantize(latent, lo, hi, 8), lo, hi, 8)
    assert np.isfinite(out).all() and np.abs(out).max() < 1e-5


def test_symbols_fit_kept_planes():
    latent = np.random.default_rng(1).normal(size=(3, 16, 16)).astype(np.float32)
    lo, hi = latent_range(latent)
    for p in range(1, 9):
        q = quantize(latent, lo, hi, p)
        assert q.dtype == np.uint8 and q.max() == 2**p - 1 and q.min() == 0
