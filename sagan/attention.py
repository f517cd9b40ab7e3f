"""The SAGAN self-attention block, and a context manager that captures its attention maps.

Every query position attends over all key positions of the same feature map (Zhang et al. 2018).
With ``pool=True`` keys and values are 2x2 max-pooled and values carry C/2 channels, as in the
official SAGAN/BigGAN code: a quarter of the keys, much cheaper at 32x32 maps.

The attention matrix is the output of the ``softmax`` submodule, so a forward hook on it sees the
(B, N, M) matrix; nothing is stored when nobody hooks it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class SelfAttention(nn.Module):
    def __init__(self, channels: int, pool: bool = False):
        super().__init__()
        self.pool = pool
        value_channels = channels // 2 if pool else channels
        self.query = spectral_norm(nn.Conv2d(channels, channels // 8, 1, bias=False))
        self.key = spectral_norm(nn.Conv2d(channels, channels // 8, 1, bias=False))
        self.value = spectral_norm(nn.Conv2d(channels, value_channels, 1, bias=False))
        # Pooled values are projected back to C channels, as in the official implementation.
        self.out = spectral_norm(nn.Conv2d(value_channels, channels, 1, bias=False)) if pool else nn.Identity()
        self.softmax = nn.Softmax(dim=-1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def key_grid(self, height: int, width: int) -> tuple[int, int]:
        """Shape of the grid the attention weights of one query are spread over."""
        return (height // 2, width // 2) if self.pool else (height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)          # (B, N, C/8)
        k, v = self.key(x), self.value(x)
        if self.pool:
            k, v = F.max_pool2d(k, 2), F.max_pool2d(v, 2)
        attn = self.softmax(torch.bmm(q, k.flatten(2)))        # (B, N, M), rows sum to 1
        o = torch.bmm(v.flatten(2), attn.transpose(1, 2))      # (B, Cv, N)
        o = self.out(o.view(b, -1, h, w))
        return x + self.gamma * o


@dataclass
class AttentionMap:
    name: str                     # the module's name in the model, e.g. "attn.16"
    resolution: int               # side of the feature map the queries live on
    key_grid: tuple[int, int]     # (rows, cols) the keys are laid out on
    gamma: float                  # learned weight of the attention branch
    weights: torch.Tensor         # (B, N, M) attention matrix, fp32 on the CPU


@contextlib.contextmanager
def capture_attention(model: nn.Module):
    """Record the attention matrices of every SelfAttention in ``model`` during the block.

    Yields a list that fills with one AttentionMap per attention layer and forward pass.
    """
    maps: list[AttentionMap] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, SelfAttention):
            def hook(_softmax, _inputs, output, name=name, module=module):
                n = output.shape[1]
                side = int(round(n ** 0.5))
                maps.append(AttentionMap(name, side, module.key_grid(side, side),
                                         float(module.gamma.detach()), output.detach().float().cpu()))
            handles.append(module.softmax.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()
