"""Tiny model configs, training runs and image folders made on the fly (tests never read ../shared),
a comparison of two trained models, and a folder made to look read-only."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sagan.config import ModelConfig, TrainConfig
from sagan.networks import Generator
from sagan.standing import batch_norms


def tiny_model(**overrides) -> ModelConfig:
    values = dict(image_size=32, z_dim=8, conv_dim=8, g_attn=(8, 16), d_attn=(8,), attn_pool=True)
    values.update(overrides)
    return ModelConfig(**values)


def tiny_train_config(data, out, **overrides) -> TrainConfig:
    values = dict(data=str(data), out=str(out), model=tiny_model(), steps=3, batch_size=4, precision="fp32",
                  device="cpu", log_every=1, sample_every=2, ckpt_every=2, num_grid=4)
    values.update(overrides)
    return TrainConfig(**values)


def train_tiny(data, out, **overrides):
    """Train a tiny config quietly (no progress bar, no TensorBoard); returns the trained models."""
    from sagan.training import train
    return train(tiny_train_config(data, out, **overrides), progress=False, tensorboard=False)


def generator_with_copied_statistics():
    """A tiny generator whose BatchNorm buffers, like G_ema's in training, were measured on other weights."""
    torch.manual_seed(0)
    g = Generator(tiny_model())
    for m in batch_norms(g):
        m.running_mean.fill_(0.3)
        m.running_var.fill_(2.0)
    return g.eval()


def write_faces(folder, count: int = 12, size: int = 40, seed: int = 0) -> list:
    """Random-colour RGB JPEGs standing in for a data set."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(path)
    return paths


def assert_trained_alike(a, b, atol: float) -> None:
    """G, D and G_ema of two ``step.Models`` agree up to GPU non-determinism."""
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            if k.endswith(("._u", "._v")):  # unit power-iteration vectors: they follow W's noise, compare directions
                assert torch.dot(sa[k], sb[k]).abs() > 0.99, f"{name}.{k}"
            else:  # cuDNN and atomics are not bitwise deterministic: equal up to a few Adam steps of noise
                torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=atol, msg=f"{name}.{k}")


def make_read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` look like one on a read-only mount, as far as checks by os.access go: tests run as root,
    whom permission bits do not stop, and cannot mount."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: access(path, mode, **kw)
                        and not (Path(path) == folder and mode & os.W_OK))
