"""The run directory: config.json, log.jsonl, metrics.jsonl, samples/, checkpoints/ and TensorBoard events
of one run, and the .lock that keeps two trainings from writing it at once."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from .atomic import atomic_write
from .checkpoint import atomic_torch_save
from .config import TrainConfig

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None


class RunLock:
    """An exclusive lock on a run directory (its .lock file), so two trainings never write one run at
    once. The operating system releases it when the process ends, however it ends (SIGKILL too)."""

    def __init__(self, root: Path):
        self.root, self.handle = root, None

    def acquire(self) -> bool:
        """Take the lock (creating the directory), or return False while another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / ".lock", "a")
        try:
            if fcntl:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.handle = handle
        return True

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        if self.handle:
            self.handle.close()
            self.handle = None


class RunDirectory:
    """One run's directory, written by rank 0 alone. Checkpoints are written atomically, and
    temporary files a killed run left behind are removed on opening."""

    def __init__(self, cfg: TrainConfig, tensorboard: bool = True):
        self.root = Path(cfg.out)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.json").write_text(cfg.to_json())
        self.ckpt_dir = self.root / "checkpoints"
        for partial in self.ckpt_dir.glob(".*.tmp*"):  # left by a run killed mid-write
            partial.unlink()
        self.keep = cfg.keep_ckpts
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.root / "tensorboard"))

    def log(self, step: int, scalars: dict) -> None:
        with open(self.root / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        if self.writer:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, step)

    def save_grid(self, step: int, images: torch.Tensor) -> Path:
        from torchvision.utils import make_grid, save_image
        grid = make_grid(images.float(), nrow=math.ceil(math.sqrt(images.shape[0])),
                         normalize=True, value_range=(-1, 1), padding=2)
        path = self.root / "samples" / f"step-{step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        save_image(grid, path)
        if self.writer:
            self.writer.add_image("samples", grid, step)
        return path

    def record_metrics(self, entry: dict) -> None:
        with open(self.root / "metrics.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    def save_best(self, state: dict) -> None:
        atomic_torch_save(state, self.ckpt_dir / "best.pt")

    def save_checkpoint(self, state: dict, periodic: bool) -> None:
        latest = self.ckpt_dir / "latest.pt"
        if not periodic:
            atomic_torch_save(state, latest)
            return
        path = self.ckpt_dir / f"step-{state['step']:07d}.pt"
        atomic_torch_save(state, path)
        # latest.pt becomes a second name for the same bytes (written once), swapped in atomically.
        try:
            with atomic_write(latest) as tmp:
                os.link(path, tmp)
        except OSError:  # a file system without hard links
            atomic_torch_save(state, latest)
        # Checkpoints past this step are an abandoned branch's (the run was rolled back): they are
        # overwritten when the run gets there, and do not count, so the rollback point is kept.
        kept = sorted(p for p in self.ckpt_dir.glob("step-*.pt") if p.name <= path.name)
        old = kept[:-self.keep] if self.keep > 0 else []
        for stale in old:
            stale.unlink()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
