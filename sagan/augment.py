"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees.

Applying the same random family of transforms to real and generated images keeps D from
memorising a small training set while leaving the distribution G must match unchanged.
All randomness comes from the caller's generator, so a training step stays reproducible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {', '.join(map(repr, bad))}: choose from {', '.join(POLICIES)}, "
                         "comma-separated.")
    return names


def _rand(x: torch.Tensor, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, generator=gen, device=x.device, dtype=torch.float32).to(x.dtype)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = x + (_rand(x, gen, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, gen, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x, gen, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen, device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen, device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy.unsqueeze(0) + dy + 1).clamp(0, h + 1)
    gx = (gx.unsqueeze(0) + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # zero border: shifted-in pixels are black, as in the paper
    flat = padded.flatten(2)
    index = (gy * (w + 2) + gx).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    return flat.gather(2, index).view_as(x)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=gen, device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=gen, device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = cy - ch // 2, cx - cw // 2
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    for name in policy:
        x = {"color": color, "translation": translation, "cutout": cutout}[name](x, gen)
    return x
