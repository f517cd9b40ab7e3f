"""Why an export's attention rows agree: how much of its unit-length queries and keys every position shares, and
what I(Q;K) its trained projections would give with cosine logits at several scales, plain and whitened.

    PYTHONPATH=. python bench/attention_probe.py checkpoints/anime64.safetensors [--faces 64] [--scales 10 20 40]

A diagnostic, not a trained result: the logits are recomputed from each layer's own query and key projections on
the faces of seeds 0..faces-1, so "whitened" says what those projections hold once the shared part is removed,
not what a generator trained with --attn-whiten does (the README's ablation measures that).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from sagan.attention import SelfAttention
from sagan.attention_metrics import mutual_information, row_entropy
from sagan.checkpoint import load_generator
from sagan.sampling import latents


def layer_inputs(g: torch.nn.Module, z: torch.Tensor) -> dict[str, tuple[SelfAttention, torch.Tensor]]:
    seen, handles = {}, []
    for name, module in g.named_modules():
        if isinstance(module, SelfAttention):
            handles.append(module.register_forward_hook(
                lambda m, inputs, _out, name=name: seen.__setitem__(name, (m, inputs[0]))))
    with torch.inference_mode():
        g(z)
    for handle in handles:
        handle.remove()
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--scales", type=float, nargs="+", default=[10, 20, 40])
    args = p.parse_args()
    g = load_generator(args.checkpoint).eval()
    for name, (m, x) in layer_inputs(g, latents(range(args.faces), g.cfg.z_dim)).items():
        if m.heads > 1:
            raise SystemExit(f"{name} has {m.heads} heads: this probe reads one.")
        q = m.query(x).flatten(2).transpose(1, 2)                        # (B, N, d)
        k = m.key(x)
        k = (F.max_pool2d(k, 2) if m.pool else k).flatten(2)             # (B, d, M)
        qn, kn = F.normalize(q, dim=2), F.normalize(k, dim=1)
        qw = F.normalize(q - q.mean(1, keepdim=True), dim=2)
        kw = F.normalize(k - k.mean(2, keepdim=True), dim=1)
        print(f"{name}: {q.shape[-1]} query/key channels, {k.shape[-1]} keys; length of the mean unit query "
              f"{qn.mean(1).norm(dim=-1).mean():.2f}, of the mean unit key {kn.mean(2).norm(dim=-1).mean():.2f} "
              "(0: no shared direction, 1: all alike)")
        for scale in args.scales:
            cosine = F.softmax(torch.bmm(qn, kn) * scale, -1)
            whitened = F.softmax(torch.bmm(qw, kw) * scale, -1)
            print(f"  scale {scale:g}: cosine I(Q;K) {mutual_information(cosine).mean():.2f} bits, row entropy "
                  f"{row_entropy(cosine).mean():.2f}; whitened cosine {mutual_information(whitened).mean():.2f}, "
                  f"{row_entropy(whitened).mean():.2f}")


if __name__ == "__main__":
    main()
