"""Hinge losses (sagan/losses.py)."""
import torch

from sagan.losses import d_hinge_loss, g_hinge_loss


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: relu(1-2)=0, relu(1-0.5)=0.5 -> 0.25; fake: relu(1-2)=0, relu(1+0)=1 -> 0.5
    assert d_hinge_loss(real, fake).item() == 0.75
    assert g_hinge_loss(fake).item() == 1.0
    assert d_hinge_loss(torch.full((4,), 3.0), torch.full((4,), -3.0)).item() == 0.0
