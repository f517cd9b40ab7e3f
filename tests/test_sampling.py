"""Latents, truncation and interpolation (sagan/sampling.py), and the uint8 image layout."""
import numpy as np
import pytest
import torch

from sagan.sampling import latent, latents, lerp, slerp, to_uint8


def test_latent_depends_on_seed_alone():
    assert torch.equal(latent(7, 16), latent(7, 16))
    assert not torch.equal(latent(7, 16), latent(8, 16))
    assert torch.equal(latents([3, 4], 16)[1], latent(4, 16))


def test_truncation_bounds_every_entry():
    z = latent(1, 512, truncation=0.5)
    assert z.abs().max() < 0.5
    with pytest.raises(ValueError, match="positive"):
        latent(1, 8, truncation=0.0)


def test_interpolation_endpoints():
    a, b = latent(1, 32), latent(2, 32)
    for fn in (slerp, lerp):
        assert torch.allclose(fn(a, b, 0.0), a, atol=1e-5)
        assert torch.allclose(fn(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert mid.norm() == pytest.approx(((a.norm() + b.norm()) / 2).item(), rel=0.1)


def test_to_uint8_range_and_layout():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out = to_uint8(x)
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 255]]
