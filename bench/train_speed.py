"""Training speed: the seed-faithful reference step against the project's trainer, in one process.

For each preset both run on the same architecture, batch size and device, timed in alternating
rounds so drift in machine load hits both alike. On a GPU the project's steps run with the settings
train.py trains with (TF32 matrix products, cuDNN autotuning); the reference's with PyTorch's
defaults, as the seed leaves them. Prints img/s for each and, last, the speedup of
the first preset listed (sagan unless --presets says otherwise).

    python bench/train_speed.py                       # CPU, all presets
    python bench/train_speed.py --device cuda --presets sagan
    python bench/train_speed.py --device cuda --presets sagan --cuda-graphs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import ReferenceTrainer  # noqa: E402
from sagan.augment import parse_policy  # noqa: E402
from sagan.config import TrainConfig, preset  # noqa: E402
from sagan.graphs import GraphedIteration  # noqa: E402
from sagan.step import Iteration, build_models, cuda_speed_settings, make_autocast, maybe_compile  # noqa: E402
from sagan.devices import DEVICES, PRECISIONS, resolve_device, resolve_precision  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step_fn, steps: int, device) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step_fn()
    _sync(device)
    return time.perf_counter() - t


def bench_preset(name: str, args, device) -> tuple[float, float]:
    cfg = TrainConfig(model=preset(name, args.image_size), preset=name, batch_size=args.batch_size,
                      precision=args.precision, compile=args.compile, seed=0)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (max(1024, args.batch_size), 3, args.image_size, args.image_size),
                           dtype=torch.uint8).to(device)
    ref = ReferenceTrainer(cfg.model, device)
    ref_real = images[:args.batch_size].float().div(127.5).sub(1)

    models = build_models(cfg, device)
    G, D = maybe_compile(models.G, cfg.compile), maybe_compile(models.D, cfg.compile)
    iterate = Iteration(models, G, D, images, cfg, parse_policy(cfg.diffaugment),
                        make_autocast(device, resolve_precision(cfg.precision, device), cache=not args.cuda_graphs))
    ours = GraphedIteration(iterate) if args.cuda_graphs else iterate

    def reference():
        return ref.step(ref_real)

    def project(steps: int) -> float:  # with the GPU settings train.py uses (TF32, cuDNN autotuning)
        with cuda_speed_settings(device):
            return time_steps(ours, steps, device)

    # Warm-up: allocator, cuDNN/oneDNN plans, compilation, and the graph's eager steps and capture.
    time_steps(reference, args.warmup, device)
    project(args.warmup + (ours.warmup + 1 if args.cuda_graphs else 0))
    if args.cuda_graphs and ours.graph is None:
        print(f"{name}: CUDA graph capture failed, the project's steps below ran eagerly", flush=True)
    t_ref = t_ours = 0.0
    for _ in range(args.rounds):
        t_ref += time_steps(reference, args.steps, device)
        t_ours += project(args.steps)
    n = args.rounds * args.steps * args.batch_size
    if args.profile:
        print_profile(f"{name} reference", reference, args.steps, device)
        with cuda_speed_settings(device):
            print_profile(f"{name} project", ours, args.steps, device)
    return n / t_ref, n / t_ours


def print_profile(title: str, step_fn, steps: int, device) -> None:
    """Where the host's time goes in ``steps`` steps: the operators taking the most of it."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        time_steps(step_fn, steps, device)
    print(f"--- {title}: {steps} steps, operators by their own host time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--presets", default="sagan,seed,dcgan", help="comma-separated; the first is reported last")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="the project's precision")
    p.add_argument("--compile", action="store_true", help="torch.compile the project's G and D")
    p.add_argument("--cuda-graphs", action="store_true", help="replay the project's steps as a CUDA graph")
    p.add_argument("--steps", type=int, default=5, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="after timing, print a profile of each side's steps")
    args = p.parse_args()
    device = resolve_device(args.device)
    if args.cuda_graphs and device.type != "cuda":
        p.error("--cuda-graphs needs a CUDA GPU (--device cuda)")
    presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    print(f"device {device}, project precision {resolve_precision(args.precision, device)}, "
          f"batch {args.batch_size}{', compiled' if args.compile else ''}"
          f"{', CUDA graphs' if args.cuda_graphs else ''}, "
          f"{args.rounds}x{args.steps} timed steps per side, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    results = {}
    for name in presets:
        ref_ips, ours_ips = bench_preset(name, args, device)
        results[name] = ours_ips / ref_ips
        print(f"{name:6s} reference {ref_ips:7.1f} img/s   project {ours_ips:7.1f} img/s   ratio {results[name]:.2f}x",
              flush=True)
    print(f"speedup {results[presets[0]]:.2f}x")


if __name__ == "__main__":
    main()
