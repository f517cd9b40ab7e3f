"""How much a run's discriminator has memorised its training faces: ADA's r_t on training and held-out faces.

    python -m sagan.overfit --run RUN [--checkpoint latest|best|step-0002000] [--num-faces N] [--device auto]

Loads D from the run's checkpoint and scores N faces drawn from its training split and N from its
held-out split (``--holdout``), unflipped and unaugmented, in eval mode; prints one JSON line with
metrics.overfitting's r_t of each side and their gap. A gap near 0 says D scores unseen faces as it scores
the ones it trained on; a gap that grows with training says it memorises them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_training_state
from .config import TrainConfig
from .data import load_images
from .devices import DEVICES, resolve_device
from .metrics import overfitting
from .networks import Discriminator


@torch.no_grad()
def discriminator_logits(d: Discriminator, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """D's logits (N,) of uint8 images (N, 3, S, S), scaled to [-1, 1] as training scales them."""
    device = next(d.parameters()).device
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size].to(device).float().div_(127.5).sub_(1.0)
        out.append(d(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out)


def measure(run: str | Path, which: str = "latest", num_faces: int = 1000, device: str | torch.device = "cpu",
            seed: int = 0) -> dict:
    """metrics.overfitting of the D in ``run``/checkpoints/``which``.pt on ``num_faces`` faces of each split (fewer
    where a split is smaller), drawn by ``seed``; with the checkpoint's step."""
    run = Path(run)
    state = load_training_state(run / "checkpoints" / f"{which}.pt")
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.holdout < 1:
        raise CheckpointError(f"{str(run)!r} trained on every face (no --holdout): r_t compares training faces "
                              "with held-out ones, so measure a run trained with --holdout N.")
    d = Discriminator(cfg.model)
    d.load_state_dict(state["D"])
    d = d.to(resolve_device(device), memory_format=torch.channels_last).eval()
    cache = cfg.cache_dir or run / "cache"
    gen = torch.Generator().manual_seed(seed)
    logits = []
    for split, max_files in (("train", cfg.max_images), ("holdout", 0)):
        images = load_images(cfg.data, cfg.model.image_size, cache_dir=cache, holdout=cfg.holdout, split=split,
                             max_files=max_files)
        chosen = torch.randperm(images.shape[0], generator=gen)[:num_faces]
        logits.append(discriminator_logits(d, images[chosen]))
    return {"step": int(state["step"]), "checkpoint": which, **overfitting(*logits)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sagan.overfit", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, metavar="DIR", help="a training run's --out, trained with --holdout")
    p.add_argument("--checkpoint", default="latest", metavar="NAME", help="checkpoints/NAME.pt (default latest)")
    p.add_argument("--num-faces", type=int, default=1000, metavar="N", help="faces of each split (default 1000)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    args = p.parse_args(argv)
    try:
        if args.num_faces < 1:
            raise ValueError(f"--num-faces must be at least 1, not {args.num_faces}.")
        print(json.dumps(measure(args.run, args.checkpoint, args.num_faces, args.device)))
    except (ValueError, OSError) as e:  # CheckpointError, DataError, unreadable files
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
