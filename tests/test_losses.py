"""Hinge losses, top-k and consistency regularisation (sagan/losses.py)."""
import pytest
import torch

from sagan.losses import consistency_loss, d_hinge_loss, g_hinge_loss, g_topk_hinge_loss, topk_count


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: relu(1-2)=0, relu(1-0.5)=0.5 -> 0.25; fake: relu(1-2)=0, relu(1+0)=1 -> 0.5
    assert d_hinge_loss(real, fake).item() == 0.75
    assert g_hinge_loss(fake).item() == 1.0
    assert d_hinge_loss(torch.full((4,), 3.0), torch.full((4,), -3.0)).item() == 0.0


def test_top_k_loss_is_the_hinge_loss_of_the_k_highest_scored_fakes():
    logits = torch.tensor([0.3, -2.0, 1.5, 0.9, -0.1], requires_grad=True)
    for k in (1, 3, torch.tensor(3), 5):
        assert g_topk_hinge_loss(logits, k).item() == pytest.approx(g_hinge_loss(logits.sort(descending=True)
                                                                                  .values[:int(k)]).item())
    g_topk_hinge_loss(logits, 2).backward()  # only the kept fakes get a gradient
    assert logits.grad.tolist() == [0.0, 0.0, -0.5, -0.5, 0.0]


def test_top_k_keeps_all_fakes_at_first_then_one_percent_fewer_per_decay_down_to_its_floor():
    assert topk_count(64, 0.5, images=0, decay_kimg=30) == 64
    assert topk_count(100, 0.5, images=30_000, decay_kimg=30) == 99
    assert topk_count(100, 0.5, images=10 * 30_000, decay_kimg=30) == round(100 * 0.99 ** 10)
    assert topk_count(64, 0.5, images=10 ** 9, decay_kimg=30) == 32
    assert topk_count(2, 0.1, images=10 ** 9, decay_kimg=1) == 1  # never none


def test_consistency_loss_is_zero_for_unchanged_logits_and_the_mean_squared_change_otherwise():
    logits = torch.tensor([0.5, -1.0, 2.0])
    assert consistency_loss(logits, logits.clone()).item() == 0.0
    assert consistency_loss(logits, logits + torch.tensor([1.0, -2.0, 0.0])).item() == pytest.approx(5 / 3)
