"""DiffAugment (sagan/augment.py): reproducible from a generator, shape-keeping, differentiable, and each
policy doing what it says."""
import pytest
import torch

from sagan.augment import color, cutout, diff_augment, parse_policy, translation


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


def test_translation_shifts_each_image_by_up_to_an_eighth_with_black_fill():
    x = torch.rand(6, 3, 16, 16) + 1  # no zeros, so the fill is recognisable
    shifted = translation(x, _gen(2))
    padded = torch.nn.functional.pad(x, [2, 2, 2, 2])  # 16 * 0.125 = 2 pixels at most
    moves = []
    for i in range(6):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(shifted[i], padded[i, :, 2 + dy:18 + dy, 2 + dx:18 + dx])]
        assert found, f"image {i} is not a shifted copy of its input"
        moves.append(found[0])
    assert len(set(moves)) > 1 and any(m != (0, 0) for m in moves)  # images move independently


def test_color_moves_a_grey_image_by_its_brightness_draw_only():
    # A uniform grey image has no saturation or contrast to change: only brightness (+-0.5) remains.
    grey = torch.full((6, 3, 4, 4), 0.2)
    out = color(grey, _gen(1))
    shift = out - grey
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    per_image = shift[:, 0, 0, 0]
    assert per_image.abs().max() <= 0.5 and per_image.unique().numel() == 6


def test_every_policy_changes_what_the_discriminator_sees():
    x = torch.rand(4, 3, 16, 16)
    for policy in ("color", "translation", "cutout", "color,translation,cutout"):
        assert not torch.equal(diff_augment(x, parse_policy(policy), _gen()), x), policy
