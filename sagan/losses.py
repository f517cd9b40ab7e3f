"""Adversarial losses (hinge: Lim & Ye 2017, used by SAGAN) and their regularisers, as pure functions of logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: push real logits above +1 and fake logits below -1."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss: raise the discriminator's logits on generated images."""
    return -fake_logits.mean()


def g_topk_hinge_loss(fake_logits: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Generator loss on the ``k`` fakes D scores highest (Sinha et al. 2020, "Top-k training of GANs"):
    the worst fakes, whose gradients point away from the data, are left out.

    ``k`` may be a 0-dim tensor, so a CUDA graph replays one shape whatever k a step keeps: the fakes are
    masked by rank rather than gathered.
    """
    ranks = fake_logits.argsort(descending=True).argsort()
    kept = (ranks < k).to(fake_logits.dtype)
    return -(fake_logits * kept).sum() / kept.sum()


def topk_count(batch_size: int, floor: float, images: float, decay_kimg: float) -> int:
    """How many of ``batch_size`` fakes the top-k loss keeps after G has trained on ``images`` images: all
    at first, 1% fewer per ``decay_kimg`` thousand images (Sinha et al.: 1% per epoch), never under
    ``floor`` of the batch (their 0.5)."""
    share = max(floor, 0.99 ** (images / (decay_kimg * 1000)))
    return max(1, min(batch_size, round(share * batch_size)))


def consistency_loss(logits: torch.Tensor, augmented_logits: torch.Tensor) -> torch.Tensor:
    """Balanced consistency regularisation's term (Zhao et al. 2020, "Improved consistency regularization
    for GANs"): the mean squared change of D's logits when its input is augmented. bCR applies it to real
    and fake images alike, so D is consistent on both without learning that augmented means fake."""
    return (logits.float() - augmented_logits.float()).square().mean()
