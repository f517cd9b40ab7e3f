"""The SAGAN self-attention block, its options, and a context manager that captures its attention maps.

Every query position attends over all key positions of the same feature map (Zhang et al. 2018).
With ``pool=True`` keys and values are 2x2 max-pooled and values carry C/2 channels, as in the
official SAGAN/BigGAN code: a quarter of the keys, much cheaper at 32x32 maps.

Options (all off: the SAGAN block, op for op; the generator's default is ``whiten`` + ``cosine`` at a
fixed scale of 20, see config.ModelConfig), combined in this order:
- ``heads``: the C/8 query/key and the value channels split into equal heads, each with its own map.
- ``whiten``: the pairwise logits are whitened, (q_i - mean q) . (k_j - mean k), means over the image's
  positions (Disentangled Non-Local, Yin et al. 2020). The query-independent term that makes all rows
  alike is gone: with dot-product logits every key's logits sum to zero over the queries, so no key is
  favoured by every query.
- ``dnl``: DNL in full: whitened logits plus a separate unary branch (a 1x1 convolution of the keys'
  input) that says where every query looks. A query attends with the average of the two softmaxes, so
  rows still sum to 1.
- ``cosine``: logits are cos(q_i, k_j) times a learned per-head scale, initialised to ``cosine_scale``
  (Swin Transformer V2, Liu et al. 2022: 10) and clamped to at most 100 (their logit_scale, tau >= 0.01).
  ``cosine_fixed``: the scale stays at ``cosine_scale`` (a buffer, not learned), as DNL's temperature does;
  a learned scale is one way training flattens the rows.
- ``rel_pos``: a learned bias B[dy, dx] per head over the (2h-1) x (2w-1) offsets between query and
  key (Swin, Liu et al. 2021). With pooled keys the offset is to the key cell's top-left query cell.
  ``positional_bias_off`` switches it off, to measure what the content alone makes of the maps.
- ``gamma_init``: the starting weight of the attention branch (SAGAN: 0).

The matrix a query attends with is the output of the ``attend`` submodule, so a forward hook on it
sees it, (B*H, N, M); nothing is stored when nobody hooks it.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

COSINE_SCALE_INIT = 10.0   # Swin V2's initial logit scale (1 / tau, tau = 0.1)
COSINE_SCALE_MAX = 100.0   # Swin V2's clamp: tau >= 0.01


class SelfAttention(nn.Module):
    def __init__(self, channels: int, pool: bool = False, heads: int = 1, dnl: bool = False, cosine: bool = False,
                 rel_pos: bool = False, grid: int = 0, gamma_init: float = 0.0, whiten: bool = False,
                 cosine_scale: float = COSINE_SCALE_INIT, cosine_fixed: bool = False):
        super().__init__()
        value_channels = channels // 2 if pool else channels
        if (channels // 8) % heads or value_channels % heads:
            raise ValueError(f"--attn-heads {heads} does not divide the {channels // 8} query/key channels of a "
                             f"{channels}-channel attention layer: choose a divisor of --conv-dim / 8.")
        self.pool, self.heads, self.dnl, self.cosine = pool, heads, dnl, cosine
        self.whiten = whiten or dnl
        self.query = spectral_norm(nn.Conv2d(channels, channels // 8, 1, bias=False))
        self.key = spectral_norm(nn.Conv2d(channels, channels // 8, 1, bias=False))
        self.value = spectral_norm(nn.Conv2d(channels, value_channels, 1, bias=False))
        # Pooled values are projected back to C channels, as in the official implementation.
        self.out = spectral_norm(nn.Conv2d(value_channels, channels, 1, bias=False)) if pool else nn.Identity()
        self.attend = nn.Identity()
        self.gamma = nn.Parameter(torch.full((1,), float(gamma_init)))
        if dnl:
            self.unary = spectral_norm(nn.Conv2d(channels, heads, 1, bias=False))
        if cosine:
            logit_scale = torch.full((heads,), math.log(cosine_scale))
            if cosine_fixed:  # the same state_dict key either way
                self.register_buffer("logit_scale", logit_scale)
            else:
                self.logit_scale = nn.Parameter(logit_scale)
        self.use_rel_pos = rel_pos
        if rel_pos:
            if grid < 2:
                raise ValueError("a relative position bias needs the side of the feature map (grid=...).")
            self.rel_pos = nn.Parameter(nn.init.trunc_normal_(torch.empty(heads, 2 * grid - 1, 2 * grid - 1),
                                                              std=0.02))
            self.register_buffer("rel_index", self._offsets(grid), persistent=False)

    def _offsets(self, side: int) -> torch.Tensor:
        """(N, M) index into the flattened bias table of each query's offset to each key."""
        stride = 2 if self.pool else 1
        qy, qx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        ky, kx = torch.meshgrid(torch.arange(0, side, stride), torch.arange(0, side, stride), indexing="ij")
        dy = qy.reshape(-1, 1) - ky.reshape(1, -1) + side - 1
        dx = qx.reshape(-1, 1) - kx.reshape(1, -1) + side - 1
        return dy * (2 * side - 1) + dx

    def key_grid(self, height: int, width: int) -> tuple[int, int]:
        """Shape of the grid the attention weights of one query are spread over."""
        return (height // 2, width // 2) if self.pool else (height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        heads = self.heads
        q = self.query(x).flatten(2)                           # (B, C/8, N)
        q = q.reshape(b * heads, -1, h * w).transpose(1, 2)    # (B*H, N, d)
        k, v = self.key(x), self.value(x)
        if self.pool:
            k, v = F.max_pool2d(k, 2), F.max_pool2d(v, 2)
        k, v = k.flatten(2), v.flatten(2)
        k = k.reshape(b * heads, -1, k.shape[-1])              # (B*H, d, M)
        v = v.reshape(b * heads, -1, v.shape[-1])              # (B*H, Cv/H, M)
        if self.whiten:
            q, k = q - q.mean(1, keepdim=True), k - k.mean(2, keepdim=True)
        if self.cosine:
            q, k = F.normalize(q, dim=2), F.normalize(k, dim=1)
        logits = torch.bmm(q, k)                               # (B*H, N, M)
        if self.cosine:
            scale = self.logit_scale.clamp(max=math.log(COSINE_SCALE_MAX)).exp()
            logits = (logits.view(b, heads, h * w, -1) * scale.view(1, heads, 1, 1)).flatten(0, 1)
        if self.use_rel_pos:
            bias = self.rel_pos.flatten(1)[:, self.rel_index]  # (H, N, M)
            logits = (logits.view(b, heads, h * w, -1) + bias).flatten(0, 1)
        attn = F.softmax(logits, dim=-1)
        if self.dnl:
            unary = self.unary(x)
            unary = F.max_pool2d(unary, 2) if self.pool else unary
            attn = (attn + F.softmax(unary.flatten(2), dim=-1).reshape(b * heads, 1, -1)) / 2
        attn = self.attend(attn)                               # rows sum to 1
        o = torch.bmm(v, attn.transpose(1, 2))                 # (B*H, Cv/H, N)
        o = self.out(o.view(b, -1, h, w))
        return x + self.gamma * o


@dataclass
class AttentionMap:
    name: str                     # the module's name in the model, e.g. "attn.16"
    resolution: int               # side of the feature map the queries live on
    key_grid: tuple[int, int]     # (rows, cols) the keys are laid out on
    gamma: float                  # learned weight of the attention branch
    weights: torch.Tensor         # (B, N, M) attention matrix, (B, H, N, M) with heads; fp32 on the CPU


@contextlib.contextmanager
def capture_attention(model: nn.Module):
    """Record the attention matrices of every SelfAttention in ``model`` during the block.

    Yields a list that fills with one AttentionMap per attention layer and forward pass.
    """
    maps: list[AttentionMap] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, SelfAttention):
            def hook(_attend, _inputs, output, name=name, module=module):
                weights = output.detach().float().cpu()
                if module.heads > 1:
                    weights = weights.view(-1, module.heads, *weights.shape[1:])
                side = int(round(weights.shape[-2] ** 0.5))
                maps.append(AttentionMap(name, side, module.key_grid(side, side), float(module.gamma.detach()),
                                         weights))
            handles.append(module.attend.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def positional_bias_off(model: nn.Module):
    """Attention in ``model`` without its relative position biases during the block: the maps its content makes."""
    modules = [m for m in model.modules() if isinstance(m, SelfAttention) and m.use_rel_pos]
    for m in modules:
        m.use_rel_pos = False
    try:
        yield
    finally:
        for m in modules:
            m.use_rel_pos = True
