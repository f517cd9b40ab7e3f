"""Generator and discriminator (sagan/networks.py): shapes per preset and size, the seed's channel ladder,
spectral norm, and the matrix-product layers."""
import pytest
import torch
from torch.nn.utils import parametrize

from sagan.config import PRESETS, preset
from sagan.networks import Discriminator, Generator
from tests.factories import tiny_model


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_for_every_preset_and_size(name, size):
    cfg = preset(name, size, conv_dim=8)
    g, d = Generator(cfg), Discriminator(cfg)
    x = g(torch.randn(2, cfg.z_dim))
    assert x.shape == (2, 3, size, size)
    assert x.abs().max() <= 1
    assert d(x).shape == (2,)
    assert len(g.attn) == len(cfg.g_attn) and len(d.attn) == len(cfg.d_attn)


def test_generator_channel_ladder_is_the_fixed_seed():
    g = Generator(preset("seed", 64))
    widths = [block[0].out_channels for block in g.blocks]
    assert widths == [512, 256, 128, 64]
    assert g.attn["4"].gamma.shape == (1,) and g.attn["4"].query.out_channels == 512 // 8


def convolutions(net: torch.nn.Module) -> set[str]:
    return {name for name, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}


def spectrally_normalised(net: torch.nn.Module) -> set[str]:
    return {name for name, m in net.named_modules() if parametrize.is_parametrized(m, "weight")}


@pytest.mark.parametrize("pool", [True, False])
def test_spectral_norm_covers_every_convolution_but_the_generators_output(pool):
    cfg = tiny_model(attn_pool=pool)
    g, d = Generator(cfg), Discriminator(cfg)
    # As in SAGAN's reference code: the to-RGB layer is the one convolution left plain.
    assert spectrally_normalised(g) == convolutions(g) - {"to_rgb.0"}
    assert any(name.startswith("attn.") for name in spectrally_normalised(g))
    assert spectrally_normalised(d) == convolutions(d)
    assert {"to_logit", "attn.8.query", "attn.8.value"} <= spectrally_normalised(d)


@pytest.mark.parametrize("network", [Generator, Discriminator])
def test_spectral_norm_keeps_top_singular_value_near_one(network):
    torch.manual_seed(0)
    net = network(tiny_model())
    with torch.no_grad():
        for _ in range(15):  # each training-mode forward runs one power iteration
            net(torch.randn(2, 3, 32, 32) if network is Discriminator else torch.randn(2, 8))
    net.eval()
    for name in spectrally_normalised(net):
        module = net.get_submodule(name)
        with torch.no_grad():  # a transposed convolution's matrix has its output channels first
            weight = module.weight.transpose(0, 1) if isinstance(module, torch.nn.ConvTranspose2d) else module.weight
            sigma = torch.linalg.matrix_norm(weight.flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05), name


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_first_and_last_layers_as_matrix_products_equal_their_convolutions(memory_format):
    torch.manual_seed(0)
    cfg = tiny_model()
    g, d = Generator(cfg).eval(), Discriminator(cfg).eval()
    g, d = g.to(memory_format=memory_format), d.to(memory_format=memory_format)
    z = torch.randn(3, cfg.z_dim)
    x = g.blocks[0](z.view(3, -1, 1, 1))  # the convolution modules themselves, as checkpoints store them
    for r, block in zip(g.resolutions, g.blocks):
        x = block(x) if r != g.resolutions[0] else x
        x = g.attn[str(r)](x) if str(r) in g.attn else x
    torch.testing.assert_close(g(z), g.to_rgb(x), rtol=0, atol=1e-5)
    h = torch.randn(3, 3, 32, 32).contiguous(memory_format=memory_format)
    feats = h
    for r, block in zip(d.resolutions, d.blocks):
        feats = block(feats)
        feats = d.attn[str(r)](feats) if str(r) in d.attn else feats
    torch.testing.assert_close(d(h), d.to_logit(feats).flatten(), rtol=0, atol=1e-5)
