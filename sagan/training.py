"""The training loop: data, checkpoints, logging, sample grids and validation around the
training step (step.py), for one process or, under torchrun, each process of a
DistributedDataParallel run, where rank 0 alone logs, samples and writes checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .atomic import why_unwritable
from .attention_metrics import report_scalars
from .augment import parse_policy
from .checkpoint import export_generator
from .config import TrainConfig
from .data import check_split, list_images, load_images
from .devices import resolve_device, resolve_precision
from .distributed import (collective_timeout, init_distributed, out_of_time, process_group_teardown, sync_buffers,
                          wrap_ddp)
from .evaluate import Extractor, check_reference, reference_statistics, score
from .graphs import GraphedIteration, use_cuda_graphs
from .rundir import RunDirectory, RunLock
from .sampling import latents
from .standing import STANDING_BATCHES, standing_statistics
from .step import (Iteration, Models, build_models, cuda_speed_settings, make_autocast, maybe_compile, restore,
                   training_state)


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, or mis-configured); the message says why."""


def validation(cfg: TrainConfig, extractor: Extractor, progress: bool = True,
               standing_batches: int = STANDING_BATCHES) -> Callable[[nn.Module, int], dict]:
    """(g, step) -> metrics.jsonl entry with validation FID and KID against the validation faces (all of
    ``cfg.eval_data``, or the holdout split of ``cfg.data``), whose statistics are computed (or read from the
    cache) once. ``extractor`` is the network ``cfg.inception_sha256`` names. ``g`` is scored as export writes
    it, with ``standing_batches`` of standing statistics, so the best state is chosen on the faces it exports."""
    reference, holdout = (cfg.eval_data, 0) if cfg.eval_data else (cfg.data, cfg.holdout)
    ref = reference_statistics(reference, cfg.model.image_size, extractor, cfg.inception_sha256, holdout,
                               cache_dir=cfg.cache_dir or Path(cfg.out) / "cache", progress=progress)
    return lambda g, step: {"step": step, "source": "train --eval-every", "standing_stats_batches": standing_batches,
                            **score(standing_statistics(g, standing_batches), ref, extractor, cfg.eval_samples,
                                    progress=progress)}


def train(cfg: TrainConfig, resume_state: dict | None = None, export: str | None = None,
          export_dtype: str = "fp32", progress: bool = True, tensorboard: bool = True,
          extractor: Extractor | None = None, resume_from: Path | None = None,
          standing_batches: int = STANDING_BATCHES) -> Models:
    """Train (or continue training ``resume_state``, loaded from the file ``resume_from``) as ``cfg``
    says; returns the models at the final step. ``cfg.max_minutes`` counts from this call. ``export``
    writes G_ema there at the end, with ``standing_batches`` of standing statistics (export_generator).

    Run under torchrun, each process trains on its share of a global batch of
    ``batch_size * world_size`` images. With ``cfg.eval_every``, rank 0 measures FID with
    ``extractor`` (the network ``cfg.inception_sha256`` names) and keeps the best state in checkpoints/best.pt.
    """
    device = resolve_device(cfg.device)
    # The group _train starts ends with it, after its last collective: on return, error or stop.
    with cuda_speed_settings(device), RunLock(Path(cfg.out)) as lock, process_group_teardown():
        return _train(cfg, device, lock, resume_state, resume_from, export, export_dtype, progress, tensorboard,
                      extractor, standing_batches)


def _train(cfg: TrainConfig, device: torch.device, lock: RunLock, resume_state: dict | None, resume_from: Path | None,
           export: str | None, export_dtype: str, progress: bool, tensorboard: bool,
           extractor: Extractor | None, standing_batches: int) -> Models:
    started = time.perf_counter()  # --max-minutes includes decoding the data and the holdout's statistics
    cfg.check()
    check_run_directory(Path(cfg.out), resume_state, cfg.steps, resume_from)
    if cfg.cache_dir:
        check_writable_directory(Path(cfg.cache_dir), "--cache-dir")
    if cfg.eval_every > 0 and cfg.holdout < 2 and not cfg.eval_data:  # a covariance needs two faces
        raise TrainingError("--eval-every measures FID on the validation split, of at least 2 faces: add --holdout N "
                            "(e.g. 2000), or --eval-data with the validation faces.")
    if cfg.eval_every > 0 and cfg.eval_data:  # (its images are counted, its cache folder checked, before training)
        check_reference(cfg.eval_data, 0, cfg.cache_dir or Path(cfg.out) / "cache", cfg.model.image_size,
                        cfg.inception_sha256)
    validation_images = 0 if cfg.eval_every <= 0 else \
        (len(list_images(cfg.eval_data)) if cfg.eval_data else cfg.holdout) + cfg.eval_samples
    ranks, device = init_distributed(device, collective_timeout(validation_images))
    if cfg.sync_bn and ranks.world == 1:
        raise TrainingError("--sync-bn only applies to multi-process runs: start them with torchrun.")
    if cfg.sync_bn and device.type != "cuda":
        raise TrainingError("--sync-bn needs CUDA GPUs: SyncBatchNorm has no CPU implementation.")
    if cfg.cuda_graphs and device.type != "cuda":
        raise TrainingError("--cuda-graphs (given, or kept by a resumed run) needs a CUDA GPU: train with "
                            "--device cuda, or add --no-cuda-graphs.")
    if cfg.cuda_graphs and ranks.world > 1:
        raise TrainingError("--cuda-graphs (given, or kept by a resumed run) works in a single process only: "
                            "add --no-cuda-graphs under torchrun.")
    graphs = use_cuda_graphs(cfg.cuda_graphs, device, ranks.world)
    if cfg.eval_every > 0 and ranks.main and extractor is None:
        raise TrainingError("--eval-every needs a feature extractor: pass extractor= (train.py loads Inception).")
    if Path(cfg.data).is_dir() and Path(cfg.out).resolve().is_relative_to(Path(cfg.data).resolve()):
        raise TrainingError(f"--out {cfg.out!r} is inside --data {cfg.data!r}: its sample grids would be read as "
                            "training images. Choose an --out outside the data folder.")
    names = list_images(cfg.data)
    # A resumed run's --holdout was given when it started and cannot change now: what no longer fits is the data.
    if resume_state is not None and cfg.holdout and cfg.holdout >= len(names):
        raise TrainingError(f"the resumed run keeps the --holdout {cfg.holdout} it started with, but --data "
                            f"{cfg.data!r} holds only {len(names)} image files: restore its files, or start a new run "
                            "(another --out) with a smaller --holdout.")
    check_split(cfg.data, names, cfg.holdout)  # before --out is made
    if ranks.main and not lock.acquire():
        raise TrainingError(f"another training is writing to --out {cfg.out!r} (it holds its .lock): wait for it "
                            "to end, or choose another --out.")
    precision = resolve_precision(cfg.precision, device)
    images = load_images(cfg.data, cfg.model.image_size, cache_dir=cfg.cache_dir or Path(cfg.out) / "cache",
                         holdout=cfg.holdout, split="train", max_files=cfg.max_images).to(device)
    models = build_models(cfg, device)
    if resume_state is not None:
        restore(models, resume_state)
        # The optimizers' saved hyper-parameters give way to the config's, where --lr-g and the like
        # changed them for the rest of the run.
        for opt, lr in ((models.opt_g, cfg.lr_g), (models.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, (cfg.beta1, cfg.beta2)
        if not (Path(cfg.out) / "checkpoints" / "best.pt").is_file():
            models.best_fid = math.inf  # a branch into a new --out keeps its own best.pt, from its own FIDs
    G, D = maybe_compile(models.G, cfg.compile), maybe_compile(models.D, cfg.compile)
    if ranks.world > 1:
        G, D = wrap_ddp(G, device, cfg.sync_bn), wrap_ddp(D, device, False)
    autocast = make_autocast(device, precision, cache=not graphs)
    iterate = Iteration(models, G, D, images, cfg, parse_policy(cfg.diffaugment), autocast, ranks)
    if graphs:
        iterate = GraphedIteration(iterate)
    run = RunDirectory(cfg, tensorboard=tensorboard) if ranks.main else None
    fixed_z = latents(range(cfg.num_grid), cfg.model.z_dim).to(device)
    validate = validation(cfg, extractor, progress, standing_batches) if cfg.eval_every > 0 and ranks.main else None
    if run:
        run.log(models.step, {"event/start": 1.0, "images": float(images.shape[0]), "processes": float(ranks.world),
                              "cuda_graphs": float(graphs)})

    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=models.step, disable=not (progress and ranks.main), unit="step",
               dynamic_ncols=True)
    loss_sums = torch.zeros(2, device=device)
    window_start = time.perf_counter()
    window_steps, done = 0, models.step >= cfg.steps
    try:
        while not done:
            loss_sums += torch.stack(iterate())
            window_steps += 1
            bar.update(1)
            done = models.step >= cfg.steps
            # Checkpoint steps are log steps too, so a non-finite loss is caught before it is saved.
            if models.step % cfg.log_every == 0 or models.step % cfg.ckpt_every == 0 or done:
                if cfg.max_minutes > 0 and not done:
                    done = out_of_time(started, cfg.max_minutes, ranks, device)
                if ranks.world > 1:
                    dist.all_reduce(loss_sums)
                d_mean, g_mean = (loss_sums / (window_steps * ranks.world)).tolist()
                ips = window_steps * cfg.batch_size * ranks.world / max(time.perf_counter() - window_start, 1e-9)
                if not (math.isfinite(d_mean) and math.isfinite(g_mean)):
                    raise TrainingError(f"losses became non-finite by step {models.step} (D {d_mean}, G {g_mean}); "
                                        f"the last good checkpoint is {Path(cfg.out) / 'checkpoints' / 'latest.pt'}. "
                                        "Lower the learning rates or use --precision fp32, then --resume.")
                if run:
                    run.log(models.step, {"loss/d": d_mean, "loss/g": g_mean, "speed/img_per_s": ips,
                                          "gamma/g": mean_attention_gamma(models.G)})
                bar.set_postfix(d=f"{d_mean:.3f}", g=f"{g_mean:.3f}", img_s=f"{ips:.0f}")
                loss_sums.zero_()
                window_start, window_steps = time.perf_counter(), 0
            extras_started = time.perf_counter()
            if ranks.world > 1 and (models.step % cfg.ckpt_every == 0 or done):
                sync_buffers(models.G, models.D, models.G_ema)
            if run and (models.step % cfg.sample_every == 0 or done):
                with torch.inference_mode():
                    run.save_grid(models.step, models.G_ema(fixed_z))
            if validate and (models.step % cfg.eval_every == 0 or done):
                result = validate(models.G_ema, models.step)
                run.record_metrics(result)
                run.log(models.step, {**{f"metrics/{k}": result[k] for k in ("fid", "kid", "precision", "recall")
                                         if result[k] is not None},  # (precision, recall: None from 3 faces or fewer)
                                      **report_scalars(result["attention"])})
                bar.write(f"step {models.step}: validation FID {result['fid']:.2f}")
                if result["fid"] < models.best_fid:
                    models.best_fid = result["fid"]
                    run.save_best(training_state(models, cfg))
            if run and (models.step % cfg.ckpt_every == 0 or done):
                run.save_checkpoint(training_state(models, cfg), periodic=models.step % cfg.ckpt_every == 0)
            window_start += time.perf_counter() - extras_started  # img/s counts training, not grids, FIDs or saves
    finally:
        bar.close()
        if run:
            run.close()
    if export and ranks.main:
        export_generator(models.G_ema, export, dtype=export_dtype, step=models.step, standing_batches=standing_batches,
                         training=dataclasses.asdict(cfg))
    if ranks.world > 1:
        dist.barrier()  # no rank leaves while rank 0 still writes
    return models


def check_run_directory(out: Path, resume_state: dict | None, steps: int, resume_from: Path | None = None) -> None:
    """Refuse what would overwrite a run, train nothing or fail only at the first write: a new run
    where one is already saved, a run resumed from ``resume_from`` into another run's directory, a
    resumed run already at ``steps``, an ``out`` that is a file or cannot be written."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {str(out)!r} is a file: give a directory for the run.")
    check_writable_directory(out, "--out")
    latest = out / "checkpoints" / "latest.pt"
    if resume_state is None and latest.is_file():
        raise TrainingError(f"{str(out)!r} already holds a run (checkpoints/latest.pt): continue it with --resume, "
                            "or start a new one with another --out.")
    if resume_from is not None and latest.is_file() and resume_from.resolve().parent != latest.resolve().parent:
        raise TrainingError(f"{str(out)!r} already holds another run (checkpoints/latest.pt), which continuing "
                            f"{str(resume_from)!r} there would overwrite: choose another --out (an empty directory "
                            "starts a branch of the resumed run).")
    if resume_state is not None and int(resume_state["step"]) >= steps:
        raise TrainingError(f"the run is already at step {int(resume_state['step'])} and --steps is {steps}: "
                            "raise --steps to train further (--export PATH alone exports it).")


def check_writable_directory(path: Path, flag: str) -> None:
    """Refuse a directory that cannot be created or written to, before any data is read."""
    why = why_unwritable(path)
    if why:
        raise TrainingError(f"cannot write {flag} {str(path)!r}: {why}. Choose another {flag}.")


def mean_attention_gamma(g: nn.Module) -> float:
    """Mean |gamma| of the generator's attention layers: how much attention contributes."""
    values = [m.gamma.abs().item() for name, m in g.named_modules() if hasattr(m, "gamma")]
    return sum(values) / len(values) if values else 0.0
