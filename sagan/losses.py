"""Hinge adversarial losses (Lim & Ye 2017; used by SAGAN), as pure functions of logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: push real logits above +1 and fake logits below -1."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss: raise the discriminator's logits on generated images."""
    return -fake_logits.mean()
