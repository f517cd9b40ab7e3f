"""FID feature speed: the Inception extractor as sagan.evaluate and validation run it, against the network
given each batch whole, as it arrives (what the extractor did before), in alternating rounds in one process.

    python bench/inception_speed.py [--device cpu|cuda] [--batch-size 64] [--rounds 3] [--inception PATH]

Both sides see the same random uint8 64x64 images, laid out as data set images and as generated faces
reach the extractor; for each, the largest difference between their features and the ratio of their images/s.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sagan import inception  # noqa: E402
from sagan.devices import DEVICES, resolve_device  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--batch-size", type=int, default=64, help="images per call, as sagan.evaluate's --batch-size")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--inception", default=None, help="the network file (default: the installed wheel's)")
    args = p.parse_args()
    device = resolve_device(args.device)
    extractor = inception.load(args.inception, device)

    @torch.inference_mode()
    def whole_batch(images: torch.Tensor) -> torch.Tensor:
        return extractor.net(inception.resize_for_inception(images.to(device))).float().cpu()

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    pixels = torch.randint(0, 256, (args.batch_size, 64, 64, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    # As sagan.evaluate hands them over: data set images stored (N, 3, H, W), and generated faces,
    # (B, H, W, 3) arrays seen as (B, 3, H, W). The last line is the generated faces' ratio, most of the work.
    layouts = {"data set images": pixels.permute(0, 3, 1, 2).contiguous(),
               "generated faces": pixels.permute(0, 3, 1, 2)}
    sides = {"project": extractor, "whole batch": whole_batch}
    for layout, images in layouts.items():
        speeds = {name: [] for name in sides}
        features = {name: side(images[:2]) for name, side in sides.items()}  # warm-up
        for _ in range(args.rounds):
            for name, side in sides.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                features[name] = side(images)
                speeds[name].append(args.batch_size / (time.perf_counter() - start))
        print(f"{layout}:")
        for name, values in speeds.items():
            print(f"  {name}: {max(values):.2f} img/s (best of {args.rounds}; "
                  f"all: {', '.join(f'{v:.2f}' for v in values)})")
        difference = (features["project"] - features["whole batch"]).abs().max().item()
        largest = features["whole batch"].abs().max().item()
        print(f"  largest feature difference {difference:.2e} (features up to {largest:.2f})")
        print(f"  speedup {max(speeds['project']) / max(speeds['whole batch']):.2f}x")


if __name__ == "__main__":
    main()
