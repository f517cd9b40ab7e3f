import pytest
import torch

from sagan.augment import cutout, diff_augment, parse_policy, translation


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_policy_is_reproducible_and_keeps_shape():
    x = torch.randn(4, 3, 16, 16)
    policy = parse_policy("color, translation,cutout")
    a, b = diff_augment(x, policy, _gen()), diff_augment(x, policy, _gen())
    assert a.shape == x.shape and torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        parse_policy("rotate")


def test_cutout_zeroes_at_most_a_quarter_and_translation_keeps_content():
    x = torch.ones(8, 3, 16, 16)
    zeroed = (cutout(x, _gen()) == 0).float().mean(dim=(1, 2, 3))
    assert (zeroed > 0).all() and (zeroed <= 0.25).all()  # a square of half the side, clipped at edges
    shifted = translation(x, _gen())
    assert set(shifted.unique().tolist()) <= {0.0, 1.0} and shifted.sum() >= x.sum() * 0.75 ** 2


def test_augment_passes_gradients():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    diff_augment(x, parse_policy("color,translation,cutout"), _gen()).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
