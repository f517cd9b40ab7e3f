"""Inference speed: images/s of batch generation, and the latency of one app request.

    python bench/sample_speed.py [--checkpoint checkpoints/anime64.safetensors] [--device cpu|cuda]

The request latency is what the app pays for a seed it has not seen: one forward pass of a single
face with the attention hooks on (sagan.explore), then the overlays of one click; and a click
alone on a face already cached.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sagan.checkpoint import load_generator  # noqa: E402
from sagan.explore import Explorer  # noqa: E402
from sagan.sampling import generate, latents  # noqa: E402
from sagan.devices import DEVICES, resolve_device  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/anime64.safetensors")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--requests", type=int, default=30)
    args = p.parse_args()
    device = resolve_device(args.device)
    g = load_generator(args.checkpoint, device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{g.cfg.image_size}px generator, attention at {g.cfg.g_attn}")

    z = latents(range(args.batch_size), g.cfg.z_dim)
    generate(g, z, args.batch_size)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.batches):
        generate(g, z, args.batch_size)
    _sync(device)
    ips = args.batches * args.batch_size / (time.perf_counter() - start)
    print(f"batch generation: {ips:.1f} img/s (batch {args.batch_size}, {args.batches} batches, to uint8 on the host)")

    explorer = Explorer(g, cache_bytes=2 ** 40)  # every face stays cached: the clicks measure overlays alone
    size = g.cfg.image_size  # two fixed queries, (20, 24) and (40, 30) on a 64x64 face, scaled to this one
    first, second = (size * 5 // 16, size * 3 // 8), (size * 5 // 8, size * 15 // 32)
    explorer.attention(10_000, 3.0, *first)  # warm-up
    fresh, click = [], []
    for seed in range(args.requests):
        t0 = time.perf_counter()
        explorer.attention(seed, 3.0, *first)  # a new seed: forward pass with hooks, then overlays
        t1 = time.perf_counter()
        explorer.attention(seed, 3.0, *second)  # same face, another click: overlays only
        t2 = time.perf_counter()
        fresh.append((t1 - t0) * 1000)
        click.append((t2 - t1) * 1000)
    for name, values in (("new seed (generate + attention)", fresh), ("click on a cached face", click)):
        values.sort()
        print(f"{name}: median {statistics.median(values):.1f} ms, p95 {values[int(0.95 * (len(values) - 1))]:.1f} ms "
              f"({len(values)} requests)")


if __name__ == "__main__":
    main()
