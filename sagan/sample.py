"""Batch sampling: one PNG per seed, at native resolution, exactly as the app renders that seed.

    python -m sagan.sample --checkpoint PATH.safetensors --seeds 0-4999 [--outdir DIR] [--grid FILE.png]
        [--truncation T] [--batch-size N]          # --outdir, --grid or both

Seeds are ranges and comma lists (``0-9,20,30-32``); the face of seed 7 goes to ``DIR/seed0007.png``.
``--truncation`` means what the app's slider means (0.2 to 3, 3 = off; default off). ``--grid``
also writes all faces on one sheet, row by row.

Faces are generated in inference mode on the CPU, one face per forward pass as the app does, so the
PNGs are the app's pixels. ``--batch-size N`` draws N faces per pass instead, faster, but convolution
kernels pick another reduction order for another batch size, and that moves a few values by one
colour level: 37 of the 3,145,728 values of seeds 0-255 of the bundled generator at 256 per pass
(3.6 times as many faces per second; 2-core Intel Xeon with AMX, torch 2.14). A GPU gives no
guarantee either, so this tool does not use one.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .atomic import why_unwritable
from .checkpoint import load_generator
from .networks import Generator
from .explore import MAX_SEED, check_seed, tile, truncation_threshold
from .sampling import generate, latents


MAX_SEEDS = 1_000_000  # faces per call: a range like 0-2147483647 would not fit in memory as a list
MAX_GRID_FACES = 4096  # a 64x64 sheet of 64 px faces is already 4,000 px wide


def parse_seeds(text: str) -> list[int]:
    """``"0-9,20,30-32"`` -> [0, ..., 9, 20, 30, 31, 32], in the order given."""
    ranges = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError(f"cannot read {part.strip()!r} in --seeds {text!r}: write whole numbers from 0 to "
                             f"{MAX_SEED}, ranges like 0-99 and comma lists like 0-9,20,30-32.") from None
        if high < low:
            raise ValueError(f"seed range {part.strip()!r} runs backwards: write it as {high}-{low}.")
        ranges.append(range(check_seed(low), check_seed(high) + 1))
    count = sum(len(r) for r in ranges)
    if count > MAX_SEEDS:
        raise ValueError(f"--seeds {text!r} asks for {count:,} faces; one call renders at most {MAX_SEEDS:,}: "
                         "split the range over several calls.")
    return [seed for r in ranges for seed in r]


def seed_filename(seed: int) -> str:
    return f"seed{seed:04d}.png"


def can_write_rgb(image_format: str) -> bool:
    """Whether Pillow can save an RGB image as ``image_format``. Registered extensions include formats it only
    reads (PSD, FITS), and some it lists as writable fail at save time (BUFR and HDF5 need a plugin, XBM and
    MSP take no RGB), so a one-pixel trial save is the only check that holds for every one of them."""
    if image_format not in Image.SAVE:
        return False
    try:
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=image_format)
    except Exception:  # plugins raise OSError, ValueError or KeyError for what they cannot write
        return False
    return True


def check_paths(outdir: str | None, grid: str | None, count: int) -> None:
    """Refuse outputs that could not be written, before any face is generated."""
    for flag, value, folder in (("--outdir", outdir, outdir), ("--grid", grid, grid and Path(grid).parent)):
        why = why_unwritable(folder) if value else None
        if why:
            raise ValueError(f"cannot write {flag} {value!r}: {why}. Choose another {flag}.")
    if grid:
        Image.init()
        suffix = Path(grid).suffix.lower()
        if suffix not in Image.registered_extensions() or Path(grid).is_dir():
            raise ValueError(f"--grid {grid!r} is not an image file name: end it in .png (or .jpg, .webp).")
        if not can_write_rgb(Image.registered_extensions()[suffix]):
            raise ValueError(f"--grid {grid!r}: Pillow cannot write a colour sheet as a {suffix} file: end it in "
                             ".png (or .jpg, .webp).")
        if count > MAX_GRID_FACES:
            raise ValueError(f"--grid puts every face on one sheet, at most {MAX_GRID_FACES:,} of them, not "
                             f"{count:,}: use --outdir alone for more.")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sagan.sample", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--checkpoint", required=True, metavar="PATH.safetensors", help="exported generator (train.py --export)")
    a("--seeds", required=True, help="seeds to render, e.g. 0-4999 or 0-9,20,30-32")
    a("--outdir", metavar="DIR", help="write DIR/seedNNNN.png for each seed")
    a("--grid", metavar="FILE.png", help="write all faces on one sheet")
    a("--truncation", type=float, default=None, metavar="T", help="the app's truncation, 0.2 to 3 (3 = off)")
    a("--batch-size", type=int, default=1, metavar="N", help="faces per forward pass (default 1: the app's exact "
      "pixels; more is faster and may move a few values by one colour level)")
    return p.parse_args(argv)


def write_faces(g: Generator, seeds: list[int], outdir: str | None, grid: str | None,
                threshold: float | None = None, batch_size: int = 1, progress: bool = True) -> None:
    """Render ``seeds`` as the app does (``threshold``: its truncation, see truncation_threshold) to
    ``outdir``/seedNNNN.png and, with ``grid``, on one sheet, row by row; ``batch_size`` faces per pass."""
    if outdir:
        Path(outdir).mkdir(parents=True, exist_ok=True)
    faces = []
    step = max(batch_size, 64)  # faces between progress updates
    with tqdm(total=len(seeds), desc="sampling", unit="face", disable=not progress) as bar:
        for start in range(0, len(seeds), step):
            chunk = seeds[start:start + step]
            images = generate(g, latents(chunk, g.cfg.z_dim, threshold), batch_size)
            if outdir:
                for seed, image in zip(chunk, images):
                    Image.fromarray(image).save(Path(outdir) / seed_filename(seed))
            if grid:
                faces.extend(images)
            bar.update(len(chunk))
    if grid:
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile(np.stack(faces))).save(grid)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not args.outdir and not args.grid:
            raise ValueError("nothing to write: pass --outdir DIR, --grid FILE.png or both.")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
        seeds = parse_seeds(args.seeds)
        check_paths(args.outdir, args.grid, len(seeds))
        threshold = None if args.truncation is None else truncation_threshold(args.truncation)
        write_faces(load_generator(args.checkpoint), seeds, args.outdir, args.grid, threshold, args.batch_size)
    except ValueError as e:  # CheckpointError, bad seeds, truncation or paths
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {e.filename or 'the output'}: {e.strerror or e}. Choose another --outdir "
              "or --grid.", file=sys.stderr)
        return 2
    print(f"wrote {len(seeds)} faces to {' and '.join(p for p in (args.outdir, args.grid) if p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
