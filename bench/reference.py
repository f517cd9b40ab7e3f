"""A seed-faithful SAGAN training step, the baseline bench/train_speed.py measures against.

Written the way the blog post writes it: its generator listing (channel bug fixed, attention
placed where the preset puts it), a plain spectral-norm discriminator with the same attention,
fp32, contiguous tensors, plain Adam, hinge loss, and the textbook two-phase step that runs G
twice and D three times. Not used by the project itself.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class SelfAttention(nn.Module):
    def __init__(self, in_dim, pool=False):
        super().__init__()
        self.pool = pool
        v_dim = in_dim // 2 if pool else in_dim
        self.query_conv = spectral_norm(nn.Conv2d(in_dim, in_dim // 8, 1, bias=False))
        self.key_conv = spectral_norm(nn.Conv2d(in_dim, in_dim // 8, 1, bias=False))
        self.value_conv = spectral_norm(nn.Conv2d(in_dim, v_dim, 1, bias=False))
        self.out_conv = spectral_norm(nn.Conv2d(v_dim, in_dim, 1, bias=False)) if pool else None
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        b, c, w, h = x.size()
        proj_query = self.query_conv(x).view(b, -1, w * h).permute(0, 2, 1)
        k, v = self.key_conv(x), self.value_conv(x)
        if self.pool:
            k, v = F.max_pool2d(k, 2), F.max_pool2d(v, 2)
        energy = torch.bmm(proj_query, k.view(b, k.shape[1], -1))
        attention = self.softmax(energy)
        out = torch.bmm(v.view(b, v.shape[1], -1), attention.permute(0, 2, 1)).view(b, -1, w, h)
        if self.pool:
            out = self.out_conv(out)
        return self.gamma * out + x


class Generator(nn.Module):
    """The post's listing, with l3 starting from conv_dim * mult // 2 channels (the bug fix)."""

    def __init__(self, image_size=64, z_dim=100, conv_dim=64, attn=(4, 8), pool=False):
        super().__init__()
        repeat_num = int(torch.log2(torch.tensor(image_size)).item()) - 3
        mult = 2 ** repeat_num
        layers = [nn.Sequential(spectral_norm(nn.ConvTranspose2d(z_dim, conv_dim * mult, 4, 1, 0, bias=False)),
                                nn.BatchNorm2d(conv_dim * mult), nn.ReLU(inplace=True))]
        ch = conv_dim * mult
        for _ in range(repeat_num):
            layers.append(nn.Sequential(spectral_norm(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False)),
                                        nn.BatchNorm2d(ch // 2), nn.ReLU(inplace=True)))
            ch //= 2
        self.layers = nn.ModuleList(layers)
        self.attns = nn.ModuleDict({str(r): SelfAttention(conv_dim * mult * 4 // r, pool) for r in attn})
        self.l4 = nn.Sequential(nn.ConvTranspose2d(conv_dim, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        out = z.view(z.size(0), -1, 1, 1)
        res = 4
        for layer in self.layers:
            out = layer(out)
            if str(res) in self.attns:
                out = self.attns[str(res)](out)
            res *= 2
        return self.l4(out)


class Discriminator(nn.Module):
    def __init__(self, image_size=64, conv_dim=64, attn=(8, 4), pool=False):
        super().__init__()
        layers, ch, res = [], 3, image_size
        out_ch = conv_dim
        while res > 4:
            layers.append(nn.Sequential(spectral_norm(nn.Conv2d(ch, out_ch, 4, 2, 1)), nn.LeakyReLU(0.1)))
            ch, out_ch, res = out_ch, out_ch * 2, res // 2
        self.layers = nn.ModuleList(layers)
        self.attns = nn.ModuleDict({str(r): SelfAttention(conv_dim * image_size // 2 // r, pool) for r in attn})
        self.last = spectral_norm(nn.Conv2d(ch, 1, 4))

    def forward(self, x):
        res = x.size(-1)
        for layer in self.layers:
            x = layer(x)
            res //= 2
            if str(res) in self.attns:
                x = self.attns[str(res)](x)
        return self.last(x).view(-1)


class ReferenceTrainer:
    def __init__(self, cfg, device):
        self.z_dim = cfg.z_dim
        self.G = Generator(cfg.image_size, cfg.z_dim, cfg.conv_dim, cfg.g_attn, cfg.attn_pool).to(device)
        self.D = Discriminator(cfg.image_size, cfg.conv_dim, cfg.d_attn, cfg.attn_pool).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=1e-4, betas=(0.0, 0.9))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=4e-4, betas=(0.0, 0.9))
        self.device = device

    def step(self, real):
        b = real.size(0)
        z = torch.randn(b, self.z_dim, device=self.device)
        fake = self.G(z).detach()
        d_loss = F.relu(1.0 - self.D(real)).mean() + F.relu(1.0 + self.D(fake)).mean()
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()

        z = torch.randn(b, self.z_dim, device=self.device)
        g_loss = -self.D(self.G(z)).mean()
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        return d_loss.item(), g_loss.item()
