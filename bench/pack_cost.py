"""What packing the training split costs (sagan/pack.py): bytes, pixel error and FID of packed faces
against the same faces decoded from the original files, real against real.

    python bench/pack_cost.py --data faces.zip --holdout 2000 [--count 1000] [--size 64] [--format webp]
        [--qualities 75 85 90 95] [--fid-quality 85]

The first --count files of the training split are decoded as training decodes them (centre square,
Lanczos to --size) and, for each quality, encoded as sagan.pack encodes them and decoded again. For
each quality: bytes a face, the whole training split projected from that, and PSNR. For
--fid-quality only (Inception is slow on a CPU): FID and KID of the packed faces against the
original ones. The sets hold the same faces, so FID's finite-sample bias does not enter: near 0 is
the answer that packing loses nothing FID sees.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sagan import inception, metrics  # noqa: E402
from sagan.data import decode_image, list_images, read_files  # noqa: E402
from sagan.evaluate import extract_features  # noqa: E402
from sagan.pack import FORMATS, encode  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--holdout", type=int, default=2000)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--format", choices=tuple(FORMATS), default="webp")
    p.add_argument("--qualities", type=int, nargs="+", default=[75, 85, 90, 95])
    p.add_argument("--fid-quality", type=int, default=85)
    args = p.parse_args()

    names = list_images(args.data)
    training = len(names) - args.holdout
    originals = [decode_image(b, args.size) for b in read_files(Path(args.data), names[:min(args.count, training)])]
    originals = np.stack([o for o in originals if o is not None])
    packed_faces = {}
    print(f"{len(originals)} training faces at {args.size} px, {args.format}; the training split holds {training}")
    for quality in sorted(set(args.qualities) | {args.fid_quality}):
        blobs = [encode(o, args.format, quality) for o in originals]
        packed_faces[quality] = np.stack([decode_image(b, args.size) for b in blobs])
        per_face = np.mean([len(b) for b in blobs])
        print(f"quality {quality:3d}: {per_face:6.0f} bytes a face, training split "
              f"~{per_face * training / 2 ** 20:5.1f} MiB (images alone, before zip headers), "
              f"PSNR {psnr(originals, packed_faces[quality]):.2f} dB", flush=True)

    extractor = inception.load(None, "cpu")
    features = [extract_features(torch.from_numpy(x).permute(0, 3, 1, 2), extractor, 64, desc, progress=False)
                for x, desc in ((originals, "original"), (packed_faces[args.fid_quality], "packed"))]
    mu_a, sigma_a = metrics.statistics(features[0])
    mu_b, sigma_b = metrics.statistics(features[1])
    print(f"quality {args.fid_quality}: FID {metrics.fid_from_statistics(mu_a, sigma_a, mu_b, sigma_b):.3f}  KID "
          f"{metrics.kid(features[1], features[0]):.6f}  (packed against original, the same {len(originals)} faces)")


if __name__ == "__main__":
    main()
