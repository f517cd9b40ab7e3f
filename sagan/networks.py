"""SAGAN generator and discriminator.

The generator is the blog post's DCGAN-style ladder of spectral-normalised transposed convolutions
with BatchNorm and ReLU, its channel bug fixed: at 64x64 the ladder is 512 -> 256 -> 128 -> 64 -> 3
over 4x4 -> 8x8 -> 16x16 -> 32x32 -> 64x64 maps. Self-attention follows whichever feature maps the
config names, with the config's attention options. The discriminator mirrors it with strided spectral-norm
convolutions and LeakyReLU; its attention stays the plain SAGAN block, so attention designs are compared
against the same critic.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .attention import SelfAttention
from .config import ModelConfig, discriminator_resolutions, generator_resolutions


def _channels(cfg: ModelConfig, resolution: int) -> int:
    # Channels halve each time the map doubles, ending at conv_dim on the largest hidden map.
    return cfg.conv_dim * (cfg.image_size // 2) // resolution


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        resolutions = generator_resolutions(cfg.image_size)
        self.blocks = nn.ModuleList()
        in_ch = cfg.z_dim
        for i, r in enumerate(resolutions):
            out_ch = _channels(cfg, r)
            conv = nn.ConvTranspose2d(in_ch, out_ch, 4, 1, 0, bias=False) if i == 0 else \
                nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False)
            self.blocks.append(nn.Sequential(spectral_norm(conv), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)))
            in_ch = out_ch
        self.attn = nn.ModuleDict({str(r): SelfAttention(_channels(cfg, r), cfg.attn_pool, cfg.attn_heads, cfg.attn_dnl,
                                                         cfg.attn_cosine, cfg.attn_rel_pos, r, cfg.attn_gamma_init,
                                                         cfg.attn_whiten, cfg.attn_cosine_scale, cfg.attn_cosine_fixed)
                                   for r in cfg.g_attn})
        self.to_rgb = nn.Sequential(nn.ConvTranspose2d(in_ch, 3, 4, 2, 1, bias=False), nn.Tanh())
        self.resolutions = resolutions

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # The first transposed convolution sees a 1x1 map, so it is a matrix product. Written as one,
        # it has no 1x1 tensors, whose ambiguous memory format trips torch.compile's layout checks.
        first = self.blocks[0][0]
        x = (z.flatten(1) @ first.weight.flatten(1)).view(z.shape[0], -1, 4, 4)
        x = x.contiguous(memory_format=torch.channels_last)
        for i, (r, block) in enumerate(zip(self.resolutions, self.blocks)):
            x = block[1:](x) if i == 0 else block(x)
            if str(r) in self.attn:
                x = self.attn[str(r)](x)
        return self.to_rgb(x)


class Discriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        resolutions = discriminator_resolutions(cfg.image_size)
        self.blocks = nn.ModuleList()
        in_ch = 3
        for r in resolutions:
            out_ch = _channels(cfg, r)
            self.blocks.append(nn.Sequential(spectral_norm(nn.Conv2d(in_ch, out_ch, 4, 2, 1)),
                                             nn.LeakyReLU(0.1, inplace=True)))
            in_ch = out_ch
        self.attn = nn.ModuleDict({str(r): SelfAttention(_channels(cfg, r), pool=cfg.attn_pool)
                                   for r in cfg.d_attn})
        self.to_logit = spectral_norm(nn.Conv2d(in_ch, 1, 4))
        self.resolutions = resolutions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r, block in zip(self.resolutions, self.blocks):
            x = block(x)
            if str(r) in self.attn:
                x = self.attn[str(r)](x)
        # The last convolution covers the whole 4x4 map: a matrix product, for the reason above.
        return x.flatten(1) @ self.to_logit.weight.flatten(1).squeeze(0) + self.to_logit.bias
