"""Operators dispatched by one training step: the reference's against the project's, per preset.

On a GPU at small batches a step costs about as much as Python takes to launch its kernels, so
the number of operators a step dispatches (views included) predicts eager speed there better
than FLOPs. It does not depend on the batch size or the device, so it is counted here on the CPU
with a tiny batch. Also counted: the operators spent in spectral norm's forward (power iteration
and weight division), and how many spectral-norm weight evaluations a step makes.

    python bench/step_ops.py [--presets sagan,seed,dcgan] [--diffaugment color,translation,cutout]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import ReferenceTrainer  # noqa: E402
from sagan.augment import parse_policy  # noqa: E402
from sagan.config import TrainConfig, preset  # noqa: E402
from sagan.step import Iteration, build_models, make_autocast  # noqa: E402


class OpCounter(TorchDispatchMode):
    """Counts every operator dispatched in the block, and those inside spectral norm's forward."""

    def __init__(self, models):
        super().__init__()
        self.total = self.in_sn = self.sn_calls = self.depth = 0
        self.handles = []
        for module in (m for model in models for m in model.modules()):
            if isinstance(module, _SpectralNorm):  # the project's: a parametrization module
                self.handles.append(module.register_forward_pre_hook(self._enter))
                self.handles.append(module.register_forward_hook(self._leave))
            elif hasattr(module, "weight_u"):  # the reference's: a pre-hook on the layer, bracketed here
                self.handles.append(module.register_forward_pre_hook(self._enter, prepend=True))
                self.handles.append(module.register_forward_pre_hook(self._leave))

    def _enter(self, *_):
        self.depth += 1
        self.sn_calls += 1

    def _leave(self, *_):
        self.depth -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.total += 1
        self.in_sn += self.depth > 0
        return func(*args, **(kwargs or {}))


def count(step, models) -> OpCounter:
    step()  # the first step creates optimizer state
    counter = OpCounter(models)
    with counter:
        step()
    for handle in counter.handles:
        handle.remove()
    return counter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="sagan,seed,dcgan")
    p.add_argument("--diffaugment", default="", help="the project's DiffAugment policy (default off)")
    args = p.parse_args()
    device, batch = torch.device("cpu"), 2
    for name in (s.strip() for s in args.presets.split(",") if s.strip()):
        cfg = TrainConfig(model=preset(name), batch_size=batch, precision="fp32", diffaugment=args.diffaugment)
        images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
        ref = ReferenceTrainer(cfg.model, device)
        real = images[:batch].float().div(127.5).sub(1)
        models = build_models(cfg, device)
        ours = Iteration(models, models.G, models.D, images, cfg, parse_policy(cfg.diffaugment),
                         make_autocast(device, "fp32"))
        for label, step, nets in (("reference", lambda: ref.step(real), (ref.G, ref.D)),
                                  ("project", ours, (models.G, models.D))):
            c = count(step, nets)
            print(f"{name:6s} {label:9s} {c.total:5d} operators per step, {c.in_sn:4d} in spectral-norm forwards "
                  f"({c.sn_calls} weight evaluations)")


if __name__ == "__main__":
    main()
