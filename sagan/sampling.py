"""Latents from seeds, the truncation trick, interpolation, and batched image generation.

A seed maps to one latent through its own torch.Generator, so a face depends on its seed alone:
the same in a grid, in the app, in a progress image and in another process.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_SEED = 2 ** 31 - 1  # the largest seed the app, sagan.sample and training take


def latent(seed: int, z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """The latent of one seed; with ``truncation``, entries with |z| >= truncation are redrawn."""
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(z_dim, generator=gen)
    if truncation is not None:
        if not truncation > 0:
            raise ValueError(f"truncation must be positive (got {truncation}); use None for no truncation.")
        while True:
            outside = z.abs() >= truncation
            count = int(outside.sum())
            if count == 0:
                return z
            z[outside] = torch.randn(count, generator=gen)
    return z


def latents(seeds, z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """Stacked latents of several seeds, (len(seeds), z_dim)."""
    return torch.stack([latent(s, z_dim, truncation) for s in seeds])


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation, which keeps the in-between latent at a typical Gaussian radius."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if float(so.abs().min()) < 1e-6:  # (anti)parallel latents: the arc is undefined, the line is not
        return lerp(a, b, t)
    return torch.sin((1.0 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    # Weighted this way, t = 1 gives b exactly (a + (b - a) * t can be a rounding off it).
    return (1 - t) * a + t * b


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3)."""
    x = (images.float().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def generate(g: nn.Module, z: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """uint8 images (B, H, W, 3) for latents z, in batches; ``g`` should be in eval mode."""
    device = next(g.parameters()).device
    out = [to_uint8(g(z[i:i + batch_size].to(device))) for i in range(0, z.shape[0], batch_size)]
    return np.concatenate(out)
