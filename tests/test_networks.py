import pytest
import torch

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


def test_spectral_norm_keeps_top_singular_value_near_one():
    d = Discriminator(tiny_model())
    with torch.no_grad():
        for _ in range(15):  # each training-mode forward runs one power iteration
            d(torch.randn(1, 3, 32, 32))
    d.eval()
    for module in d.modules():
        if isinstance(module, torch.nn.Conv2d) and hasattr(module, "parametrizations"):
            with torch.no_grad():
                sigma = torch.linalg.matrix_norm(module.weight.flatten(1), ord=2)
            assert sigma == pytest.approx(1.0, abs=0.05)
