"""The attention maps of one seed's face under several generators, clicked at the same pixels: one row per
generator (its face, then each layer's map for each pixel), as in the README.

    PYTHONPATH=. python bench/attention_figure.py --checkpoints today.safetensors chosen.safetensors --seed 0 \
        --pixels 10,12 21,12 16,24 --out docs/attention-designs.png

A generator with several heads per layer shows their mean map, as the app does.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from sagan.checkpoint import load_generator
from sagan.explore import attention_overlay, render, tile, upscale
from sagan.sampling import latents


def _sized(image: np.ndarray, display: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((display, display), Image.NEAREST))


def row(checkpoint: str, seed: int, pixels: list[tuple[int, int]], display: int) -> list[np.ndarray]:
    g = load_generator(checkpoint)
    ratio = g.cfg.image_size // 32
    pixels = [(x * ratio + ratio // 2, y * ratio + ratio // 2) for x, y in pixels]
    face = render(g, latents([seed], g.cfg.z_dim)[0])
    images = [upscale(face.face, display // g.cfg.image_size)]
    for m in face.attn_maps:
        images += [_sized(attention_overlay(face.face, m, x, y), display) for x, y in pixels]
    return images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixels", nargs="+", required=True, help="x,y in pixels of a 32 px face (of a 64 px one: the "
                   "centre of the 2x2 pixels there)")
    p.add_argument("--display", type=int, default=128, help="side of each picture in the figure")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    pixels = [tuple(int(v) for v in text.split(",")) for text in args.pixels]
    rows = [row(c, args.seed, pixels, args.display) for c in args.checkpoints]
    Image.fromarray(tile(np.stack([image for r in rows for image in r]), columns=len(rows[0]))).save(args.out)


if __name__ == "__main__":
    main()
