"""Generator step time of each attention option, side by side: forward and backward of G on one batch, the
arms interleaved round by round so a busy machine slows them alike; prints each arm's median and its ratio to
the SAGAN block (no attention option).

    python bench/attention_speed.py --image-size 32 --batch-size 64 --rounds 7
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sagan.config import FIELDS_BEFORE, preset
from sagan.networks import Generator

SAGAN_BLOCK = FIELDS_BEFORE  # every option off; cosine logits, where an arm adds them, learn their scale from 10
ARMS = {
    "sagan": SAGAN_BLOCK,
    "dnl": dict(SAGAN_BLOCK, attn_dnl=True),
    "cosine": dict(SAGAN_BLOCK, attn_cosine=True),
    "rel-pos": dict(SAGAN_BLOCK, attn_rel_pos=True),
    "heads2": dict(SAGAN_BLOCK, attn_heads=2),
    "cosine+gamma0.5": dict(SAGAN_BLOCK, attn_cosine=True, attn_gamma_init=0.5),
    "whiten+cosine": dict(SAGAN_BLOCK, attn_whiten=True, attn_cosine=True),
    "whiten+cos fixed20": dict(SAGAN_BLOCK, attn_whiten=True, attn_cosine=True, attn_cosine_scale=20.0,
                               attn_cosine_fixed=True),
    "all": dict(attn_dnl=True, attn_cosine=True, attn_rel_pos=True, attn_heads=2),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    torch.manual_seed(0)
    models = {name: Generator(preset("sagan", args.image_size, **options)) for name, options in ARMS.items()}
    z = torch.randn(args.batch_size, 100)
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    for r in range(args.rounds + 1):
        for name, g in models.items():
            start = time.perf_counter()
            g(z).square().mean().backward()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["sagan"])
    print(f"G forward+backward, {args.image_size} px, batch {args.batch_size}, median of {args.rounds} rounds, "
          f"{torch.get_num_threads()} thread(s)")
    for name, values in times.items():
        print(f"{name:16s} {statistics.median(values) * 1000:8.1f} ms  x{statistics.median(values) / base:.2f}")


if __name__ == "__main__":
    main()
