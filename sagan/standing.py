"""Standing statistics: BatchNorm statistics measured on the EMA generator's own activations (BigGAN).

During training G_ema's BatchNorm buffers are copied from G, so they describe the activations of
other weights than the averaged ones the app samples with. Export recomputes them: the BatchNorm
layers alone run in training mode, with a cumulative average (momentum None), over a fixed number
of batches of fresh untruncated latents from one seeded generator, so the same weights always give
the same statistics and the same exported bytes. Everything else stays in eval mode: spectral
norm's power iteration must not move the weights. Sampling afterwards is in eval mode as before, so
a seed's face does not depend on the rest of its batch.

Files exported before export measured them get them without retraining:

    python -m sagan.standing --checkpoint old.safetensors --out new.safetensors [--batches 40]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
from torch import nn

STANDING_BATCHES = 40       # batches export averages BatchNorm statistics over (BigGAN's standing statistics)
STANDING_BATCH_SIZE = 256   # latents per batch, the batch the bundled generator trained with
# The latents' own seed: a torch.Generator of seed s draws latent(s)'s numbers first, and this one is above
# every seed the app, sagan.sample and validation take (MAX_SEED = 2**31 - 1).
STANDING_SEED = 2 ** 31


def batch_norms(g: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def standing_statistics(g: nn.Module, batches: int = STANDING_BATCHES,
                        batch_size: int = STANDING_BATCH_SIZE) -> nn.Module:
    """A copy of generator ``g`` in eval mode whose BatchNorm running statistics are the averages over
    ``batches`` batches of ``batch_size`` latents (0 batches: a plain copy). ``g`` is left as it was."""
    if batches < 0 or batch_size < 2:
        raise ValueError(f"standing statistics need 0 or more batches of at least 2 latents, not {batches} "
                         f"of {batch_size}.")
    g = copy.deepcopy(g).eval()
    norms = batch_norms(g)
    if batches == 0 or not norms:
        return g
    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(STANDING_SEED)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts the same
        m.train()
    for _ in range(batches):
        g(torch.randn(batch_size, g.cfg.z_dim, generator=gen).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()
    return g



def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sagan.standing", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, metavar="PATH.safetensors", help="an exported generator")
    p.add_argument("--out", required=True, metavar="PATH.safetensors",
                   help="where to write it with standing statistics (may be --checkpoint itself)")
    p.add_argument("--batches", type=int, default=STANDING_BATCHES, metavar="N",
                   help=f"batches of {STANDING_BATCH_SIZE} fresh latents (default {STANDING_BATCHES})")
    args = p.parse_args(argv)
    from .checkpoint import refresh_export  # checkpoint.py imports this module
    try:
        if args.batches < 1:
            raise ValueError(f"--batches must be 1 or more, not {args.batches}.")
        metadata = refresh_export(args.checkpoint, args.out, args.batches)
    except (ValueError, OSError) as e:  # CheckpointError, unwritable paths
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in metadata.items() if k != "config"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
