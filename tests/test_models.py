import pytest
import torch

from tinycodec.models import SCALE_DEPTHS, DecoderBlock, EncoderBlock, TinyCompress, count_parameters


def test_parameter_counts_match_the_seed():
    assert count_parameters(EncoderBlock()) == 5427
    assert count_parameters(DecoderBlock()) == 1071


@pytest.mark.parametrize("scale", sorted(SCALE_DEPTHS))
def test_shapes_per_scale(scale):
    model = TinyCompress(scale)
    k = SCALE_DEPTHS[scale]
    x = torch.rand(1, 3, 64, 48)
    latent = model.encoder(x)
    assert latent.shape == (1, 3, 64 >> k, 48 >> k)
    out = model.decoder(latent)
    assert out.shape == x.shape
    assert 0 <= out.min() and out.max() <= 1
    # weights are shared across iterations: every scale has the same parameter count
    assert count_parameters(model) == 5427 + 1071
    assert count_parameters(TinyCompress(scale, shared=False)) == k * (5427 + 1071)


def test_unknown_scale_rejected():
    with pytest.raises(ValueError):
        TinyCompress(8)


@pytest.mark.parametrize("scale", sorted(SCALE_DEPTHS))
def test_resampler_init_reconstructs_at_every_depth(scale):
    """The training start point is a working down/up-sampler, not a grey image."""
    import numpy as np

    from tinycodec.models import init_as_resampler

    from .conftest import photo_like, psnr

    img = photo_like(128, 128)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    model = init_as_resampler(TinyCompress(scale))
    with torch.no_grad():
        out = model.decoder(model.encoder(x))[0].permute(1, 2, 0).numpy() * 255
    flat = np.broadcast_to(img.mean(axis=(0, 1)), img.shape)
    # the sigmoid in each decoding block flattens contrast a little more at every depth
    margin = {4: 10, 16: 5, 64: 2, 256: 0.5}[scale]
    assert psnr(img, out) > psnr(img, flat) + margin


@pytest.mark.parametrize("scale", sorted(SCALE_DEPTHS))
def test_flat_image_gives_a_flat_latent_to_the_borders(scale):
    """Edge-replicating padding: a flat image has no border for the encoder to darken.

    With zero padding every block saw a black frame around the image, and the
    frame grew with depth (4 * (2^k - 1) pixels); here a flat input gives a
    flat latent, corners included, whatever the weights.
    """
    torch.manual_seed(0)
    model = TinyCompress(scale)
    with torch.no_grad():
        latent = model.encoder(torch.full((1, 3, 64, 96), 0.4))
    assert latent.std(dim=(2, 3)).max() < 1e-5


@pytest.mark.parametrize("scale", [16, 256])
def test_untie_computes_the_same_function_with_one_block_per_iteration(scale):
    from tinycodec.models import has_shared_blocks, untie

    torch.manual_seed(0)
    model = TinyCompress(scale)
    untied = untie(model)
    assert has_shared_blocks(model.state_dict()) and not has_shared_blocks(untied.state_dict())
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(untied.encoder(x), model.encoder(x))
        y = model.encoder(x)
        assert torch.equal(untied.decoder(y), model.decoder(y))
    # the copies are independent parameters, not one block referenced k times
    with torch.no_grad():
        untied.encoder.blocks[0].body[0].bias.add_(1.0)
    assert not torch.equal(untied.encoder.blocks[1].body[0].bias, untied.encoder.blocks[0].body[0].bias)
