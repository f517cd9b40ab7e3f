"""torchrun support: the process group, DistributedDataParallel wrapping, and what the ranks agree on.

Each process trains on its share of every global batch; gradients are all-reduced by DDP, and
rank 0 alone logs, samples and writes checkpoints, so the ranks' buffers and clocks are made to
agree with rank 0's where that matters.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

# Inception ran at 3.5-5.6 img/s on 2 CPU cores, and torchrun gives each process one thread by
# default: the timeout assumes 1 img/s, a margin rather than a measurement.
CPU_INCEPTION_IMAGES_PER_S = 1.0


@dataclass
class Distributed:
    rank: int = 0         # this process's rank
    world: int = 1        # number of processes

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size * world``."""
        return slice(self.rank * batch_size, (self.rank + 1) * batch_size)


def collective_timeout(validation_images: int) -> timedelta:
    """How long CPU ranks wait at a collective for the others: gloo's default 30 minutes, or longer
    when rank 0 meanwhile runs Inception on ``validation_images`` (reference and samples)."""
    return max(timedelta(minutes=30), timedelta(seconds=validation_images / CPU_INCEPTION_IMAGES_PER_S))


def init_distributed(device: torch.device, cpu_timeout: timedelta = timedelta(minutes=30)
                     ) -> tuple[Distributed, torch.device]:
    """The process group torchrun describes in the environment (none for a single process), and
    this process's device (its own GPU under torchrun). CPU ranks (gloo) wait ``cpu_timeout`` at a
    collective; GPU ranks (NCCL) keep its default, since validation on a GPU takes seconds."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo", timeout=cpu_timeout)
        # Every rank finishes connecting before any may leave: one that refuses the run right away and
        # destroys its group would otherwise break a slower peer's connection setup (gloo connectFullMesh).
        dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)
    return Distributed(rank, world), device


@contextlib.contextmanager
def process_group_teardown() -> Iterator[None]:
    """Destroy the process group that the enclosed code started (init_distributed), whether it returns,
    raises or is stopped (Ctrl-C, SIGTERM as KeyboardInterrupt). A group left to interpreter shutdown
    still has gloo's threads running, which can abort the process after the run succeeded (SIGABRT,
    "terminate called without an active exception"). A group that was there before is left alone."""
    started_before = dist.is_initialized()
    try:
        yield
    finally:
        if not started_before and dist.is_initialized():
            dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # DDP's default broadcasts rank 0's buffers (BatchNorm statistics, spectral-norm vectors) at
    # every forward, so the ranks' buffers drift apart by one local update at most.
    return DDP(model, device_ids=[device] if device.type == "cuda" else None)


def sync_buffers(*modules: nn.Module) -> None:
    """Give every rank rank 0's buffers, so what rank 0 saves is what every rank holds."""
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def out_of_time(started: float, minutes: float, ranks: Distributed, device: torch.device) -> bool:
    """Whether ``minutes`` have passed since ``started``, as rank 0's clock says (all ranks agree)."""
    late = time.perf_counter() - started >= minutes * 60
    if ranks.world == 1:
        return late
    flag = torch.tensor([float(late)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())
