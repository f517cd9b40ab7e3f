"""The EMA half-life's default, old against new, at equal images: one training run, several averages.

    python bench/ema_half_life.py --data faces.zip --holdout 2000 [--steps 6500] [--batch-size 64]
        [--image-size 32] [--conv-dim 32] [--max-images 0] [--num-samples 1000] [--cache-dir .cache]
        [--half-lives 10] [--bn standing copied] [--device auto|cpu|cuda]

G and D train once (the EMA never feeds back into training); alongside the run's own G_ema, which
follows the new default (--ema-kimg unset: 10 kimg per 32 images of the batch), the script keeps
one average per --half-lives value (kimg, same ramp-up), by default the old default's 10 kimg
whatever the batch. The old default spanned 39 steps at the bundled generator's batch of 256: at a
smaller batch, 39 steps is 10 * batch / 256 kimg (2.5 at 64). At the end each average is scored
against the last --holdout files (seeds 0..N-1, no truncation), with standing statistics (what
export now writes) and, with --bn, with the BatchNorm statistics copied from G. The ramp-up caps the
half-life at --ema-rampup (0.05) of the images seen so far, so the two defaults only differ after 20
times the shorter half-life: 200k images at batch 64 or more.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sagan import inception  # noqa: E402
from sagan.augment import parse_policy  # noqa: E402
from sagan.config import TrainConfig, preset  # noqa: E402
from sagan.data import load_images  # noqa: E402
from sagan.devices import DEVICES, resolve_device, resolve_precision  # noqa: E402
from sagan.evaluate import reference_statistics, score  # noqa: E402
from sagan.standing import standing_statistics  # noqa: E402
from sagan.step import Iteration, build_models, ema_decay, ema_half_life_kimg, make_autocast, update_ema  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--holdout", type=int, default=2000)
    p.add_argument("--steps", type=int, default=6500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--conv-dim", type=int, default=32)
    p.add_argument("--max-images", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--half-lives", type=float, nargs="+", default=[10.0], metavar="KIMG",
                   help="fixed half-lives to average alongside the new default (default: the old default, 10)")
    p.add_argument("--bn", nargs="+", choices=("standing", "copied"), default=["standing"],
                   help="BatchNorm statistics each average is scored with: standing (as exported) or copied from G")
    args = p.parse_args()

    cfg = TrainConfig(data=args.data, holdout=args.holdout, steps=args.steps, batch_size=args.batch_size,
                      max_images=args.max_images, seed=args.seed, device=args.device, precision="auto",
                      model=preset("sagan", args.image_size, conv_dim=args.conv_dim))
    cfg.check()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    images = load_images(cfg.data, args.image_size, cache_dir=args.cache_dir, holdout=cfg.holdout, split="train",
                         max_files=cfg.max_images).to(device)
    models = build_models(cfg, device)
    iterate = Iteration(models, models.G, models.D, images, cfg, parse_policy(cfg.diffaugment),
                        make_autocast(device, precision))
    schedules = {f"fixed {kimg:g} kimg": dataclasses.replace(cfg, ema_kimg=kimg) for kimg in args.half_lives}
    averages = {name: copy.deepcopy(models.G_ema) for name in schedules}
    print(f"{images.shape[0]} training faces at {args.image_size} px, conv_dim {args.conv_dim}, batch "
          f"{cfg.batch_size}, {precision}; new default half-life {ema_half_life_kimg(cfg):g} kimg", flush=True)
    started = time.perf_counter()
    weight = torch.zeros((), device=device)
    while models.step < cfg.steps:
        iterate()
        for name, schedule in schedules.items():
            weight.fill_(1.0 - ema_decay(schedule, models.step))
            update_ema(averages[name], models.G, weight)
        if models.step % 500 == 0:
            print(f"step {models.step}: {models.step * cfg.batch_size / (time.perf_counter() - started):.0f} img/s",
                  flush=True)
    print(f"trained {cfg.steps} steps ({cfg.steps * cfg.batch_size:,} images) in "
          f"{(time.perf_counter() - started) / 60:.1f} min", flush=True)

    extractor = inception.load(None, device)
    ref = reference_statistics(cfg.data, args.image_size, extractor, inception.INCEPTION_SHA256, cfg.holdout,
                               cache_dir=args.cache_dir, progress=False)
    for name, g in {f"new default ({ema_half_life_kimg(cfg):g} kimg)": models.G_ema, **averages}.items():
        for stats in args.bn:
            model = standing_statistics(g) if stats == "standing" else g
            r = score(model.eval(), ref, extractor, args.num_samples, progress=False)
            print(f"{name:>22}, {stats} BN: FID {r['fid']:.2f}  KID {r['kid']:.5f}  precision "
                  f"{r['precision']:.3f}  recall {r['recall']:.3f}  ({args.num_samples} generated, "
                  f"{r['num_reference']} reference)", flush=True)


if __name__ == "__main__":
    main()
