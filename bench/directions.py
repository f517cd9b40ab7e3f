"""What each of a generator's top SeFa directions does, measured over many faces.

    python bench/directions.py [--checkpoint checkpoints/anime64.safetensors] [--seeds 64]
        [--reference /work/shared/data/anime-faces-96.zip --holdout 2000] [--amounts 3,4.5,1.5]
        [--grid docs/directions.png] [--sheets DIR] [--no-realism]

For each of the top ``--directions`` directions n (sagan.directions) and the faces of seeds
0..seeds-1 (no truncation), with pixels in [-1, 1] as the generator draws them:

- consistency: the mean cosine similarity between the pixel changes G(z + n) - G(z) of every two
  different faces (1: the step does the same thing to every face; 0: unrelated changes);
- change per unit step: the mean absolute change of a pixel, in 0-255 levels, for an amount of 1
  (one standard deviation of the latent);
- realism at each of ``--amounts``: the share of edited faces inside the real faces' manifold, precision's
  test in sagan.metrics (a face counts when its Inception features lie within the k-NN ball, k = 3, of some
  real face), next to the same share for the unedited faces. Each seed's face is edited once per amount,
  the first half of the seeds by +amount and the second half by -amount, so both ends of a slider count.
  The largest amount counted realistic is the largest one tested whose share, and every smaller one's, is
  at most ``--margin`` below the unedited faces' share.

Inception runs at a few faces a second on a shared CPU: the generated faces' features are kept in
``--features`` (one entry per amount and direction, so an interrupted run goes on where it stopped), the
real faces' in --cache-dir like sagan.evaluate's. ``--grid`` draws seed ``--grid-seed``'s face: a row per
direction, a column per amount; ``--sheets`` writes, per direction, such rows for 8 seeds, to look at.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sagan import evaluate, inception, metrics  # noqa: E402
from sagan.checkpoint import load_generator  # noqa: E402
from sagan.directions import generator_directions  # noqa: E402
from sagan.explore import tile, upscale  # noqa: E402
from sagan.sampling import latents, to_uint8  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@torch.inference_mode()
def draw(g, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Generator output in [-1, 1], float32 (B, 3, H, W)."""
    return torch.cat([g(z[i:i + batch_size]).float().clamp(-1, 1) for i in range(0, z.shape[0], batch_size)])


def consistency(changes: torch.Tensor) -> float:
    """Mean cosine similarity between the flattened changes (B, ...) of every two different faces."""
    unit = torch.nn.functional.normalize(changes.flatten(1).double(), dim=1)
    cosines = unit @ unit.T
    b = cosines.shape[0]
    return float((cosines.sum() - cosines.diagonal().sum()) / (b * (b - 1)))


def features(g, z: torch.Tensor, extractor) -> torch.Tensor:
    faces = to_uint8(draw(g, z))
    return extractor(torch.from_numpy(faces).permute(0, 3, 1, 2))


def largest_realistic(shares: list[float], amounts: list[float], baseline: float, margin: float) -> float:
    """The largest amount whose share, and every smaller amount's, is no more than ``margin`` below ``baseline``."""
    largest = 0.0
    for amount, share in zip(amounts, shares):
        if share < baseline - margin:
            break
        largest = amount
    return largest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "anime64.safetensors"))
    p.add_argument("--directions", type=int, default=8)
    p.add_argument("--seeds", type=int, default=64, help="faces of seeds 0..N-1")
    p.add_argument("--reference", default="/work/shared/data/anime-faces-96.zip")
    p.add_argument("--holdout", type=int, default=2000, help="real faces: the last N files by name")
    p.add_argument("--cache-dir", default=str(ROOT / ".cache"))
    p.add_argument("--amounts", default="3,4.5,1.5", help="amounts tested for realism, encoded in this order")
    p.add_argument("--features", default=str(ROOT / ".cache" / "direction-features.pt"),
                   help="where the generated faces' features are kept between runs")
    p.add_argument("--margin", type=float, default=0.1, help="the largest drop in share counted as realistic")
    p.add_argument("--grid", default=None, help="write a direction x amount grid of one face here (PNG)")
    p.add_argument("--grid-seed", type=int, default=0)
    p.add_argument("--grid-amounts", default="-3,-2,-1,0,1,2,3")
    p.add_argument("--sheets", default=None, help="write per-direction sheets of 8 seeds here")
    p.add_argument("--no-realism", action="store_true", help="skip the Inception test")
    args = p.parse_args()
    start = time.monotonic()
    g = load_generator(args.checkpoint)
    eigenvalues, directions = generator_directions(g, args.directions)
    z = latents(range(args.seeds), g.cfg.z_dim)
    base = draw(g, z)
    print(f"{args.checkpoint}: top {args.directions} of {g.cfg.z_dim} directions, {args.seeds} faces; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    grid_amounts = [float(a) for a in args.grid_amounts.split(",")]
    if args.grid:
        zg = latents([args.grid_seed], g.cfg.z_dim)[0]
        rows = torch.stack([zg + a * n for n in directions for a in grid_amounts])
        Image.fromarray(tile(to_uint8(draw(g, rows)), columns=len(grid_amounts))).save(args.grid, optimize=True)
        print(f"grid: {args.grid}")
    if args.sheets:
        Path(args.sheets).mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(directions):
            rows = torch.stack([zs + a * n for zs in z[:8] for a in grid_amounts])
            Image.fromarray(upscale(tile(to_uint8(draw(g, rows)), columns=len(grid_amounts)), 2)).save(
                Path(args.sheets) / f"direction-{i + 1}.png")

    table = []
    for i, n in enumerate(directions):
        change = draw(g, z + n) - base
        table.append({"direction": i + 1, "eigenvalue": float(eigenvalues[i]), "consistency": consistency(change),
                      "change": float(change.abs().mean() * 127.5)})

    order = [float(a) for a in args.amounts.split(",")]  # encoded in this order, so the first ones come first
    amounts = sorted(order)
    if not args.no_realism:
        extractor = inception.load()
        kept = torch.load(args.features) if Path(args.features).is_file() else {}
        signs = torch.tensor([1.0 if i < args.seeds // 2 else -1.0 for i in range(args.seeds)])[:, None]
        # What the features are of: a kept entry made for other faces is recomputed.
        setup = f"{Path(args.checkpoint).resolve()}|{Path(args.checkpoint).stat().st_mtime_ns}|{args.seeds}"

        def kept_features(key: str, z_edited: torch.Tensor) -> torch.Tensor:
            if kept.get(key, (None,))[0] != setup:
                kept[key] = (setup, features(g, z_edited, extractor))
                torch.save(kept, args.features)
                print(f"{key}: {z_edited.shape[0]} faces encoded  [{time.monotonic() - start:.0f} s]", flush=True)
            return kept[key][1]
        unedited = kept_features("unedited", z)
        edited = {(a, i): kept_features(f"amount {a:g}, direction {i + 1}", z + signs * a * n)
                  for a in order for i, n in enumerate(directions)}
        ref = evaluate.reference_statistics(args.reference, g.cfg.image_size, extractor, inception.INCEPTION_SHA256,
                                            args.holdout, cache_dir=args.cache_dir)
        real = ref["features"]
        baseline, _ = metrics.precision_recall(real, unedited)
        for i, row in enumerate(table):
            row["shares"] = [metrics.precision_recall(real, edited[a, i])[0] for a in amounts]
            row["largest"] = largest_realistic(row["shares"], amounts, baseline, args.margin)

    print()
    head = "| direction | eigenvalue | consistency | change per unit step (levels) |"
    if not args.no_realism:
        head += "".join(f" share inside at ±{a:g} |" for a in amounts) + " largest realistic amount |"
    print(head)
    print("|" + "---|" * head.count(" |"))
    for row in table:
        line = f"| {row['direction']} | {row['eigenvalue']:.0f} | {row['consistency']:.2f} | {row['change']:.1f} |"
        if "shares" in row:
            line += "".join(f" {s:.2f} |" for s in row["shares"]) + f" {row['largest']:g} |"
        print(line)
    if not args.no_realism:
        print(f"\nrealistic: share of {args.seeds} edited faces (seeds 0-{args.seeds - 1}, the first half +amount, "
              f"the rest -amount) inside the k-NN balls (k = {metrics.NEIGHBOURS}) of {real.shape[0]} real faces' "
              f"Inception features; the same faces unedited: {baseline:.2f}; counted realistic while no more than "
              f"{args.margin:g} below it")
    print(f"total {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
