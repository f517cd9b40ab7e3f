"""How an exported generator's BatchNorm statistics change its faces: FID, KID, precision and recall of
the same weights sampled three ways, against the same reference, in one process.

    python bench/standing_stats.py --checkpoint checkpoints/anime64.safetensors \
        --reference faces.zip --holdout 2000 [--num-samples 2000] [--cache-dir .cache]

  as exported:  eval mode with the statistics the file holds (for a file exported before standing
                statistics: G's, copied into G_ema during training);
  standing:     eval mode with statistics recomputed as export now does (sagan/standing.py);
  train-mode:   every batch normalised by its own statistics at sampling time (batches of --batch-size),
                which makes a face depend on the rest of its batch.

Seeds 0..N-1 without truncation for each, as sagan.evaluate draws them.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sagan import inception  # noqa: E402
from sagan.checkpoint import load_generator, read_export_metadata  # noqa: E402
from sagan.evaluate import reference_statistics, score  # noqa: E402
from sagan.standing import STANDING_BATCH_SIZE, STANDING_BATCHES, batch_norms, standing_statistics  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reference", required=True, help="folder or .zip of real faces")
    p.add_argument("--holdout", type=int, default=0, help="the last N files by name only (0: all)")
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64, help="faces per forward pass (train-mode: per statistics)")
    p.add_argument("--standing-batches", type=int, default=STANDING_BATCHES)
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--variants", nargs="+", choices=("exported", "standing", "train-mode"),
                   default=["exported", "standing", "train-mode"], help="which of the three to score")
    args = p.parse_args()

    extractor = inception.load(None, "cpu")
    g = load_generator(args.checkpoint)
    metadata = {k: v for k, v in read_export_metadata(args.checkpoint).items() if k != "config"}
    print(f"{args.checkpoint}: metadata {json.dumps(metadata)}")
    ref = reference_statistics(args.reference, g.cfg.image_size, extractor, inception.INCEPTION_SHA256,
                               args.holdout, cache_dir=args.cache_dir)
    for variant in args.variants:
        model, name = g, "as exported"
        if variant == "standing":
            started = time.perf_counter()
            model, name = standing_statistics(g, args.standing_batches), "standing"
            print(f"standing statistics: {args.standing_batches} batches of {STANDING_BATCH_SIZE} in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        elif variant == "train-mode":
            model, name = copy.deepcopy(g), f"train-mode (batch {args.batch_size})"
            for m in batch_norms(model):
                m.train()
        result = score(model, ref, extractor, args.num_samples, args.batch_size)
        print(f"{name:>22}: FID {result['fid']:.2f}  KID {result['kid']:.5f}  precision {result['precision']:.3f}  "
              f"recall {result['recall']:.3f}  ({args.num_samples} generated, {result['num_reference']} reference)",
              flush=True)


if __name__ == "__main__":
    main()
