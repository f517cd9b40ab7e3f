"""Train SAGAN on a folder or zip of images, and export the EMA generator for the app.

    python train.py --data faces.zip --out runs/anime64 --steps 20000
    python train.py --out runs/anime64 --resume --steps 40000        # continue a run
    python train.py --out runs/anime64 --export checkpoints/anime64.safetensors   # export only
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import signal
import sys
import warnings
from pathlib import Path

from sagan import inception
from sagan.checkpoint import CheckpointError, check_export_path, export_run, load_training_state, resume_checkpoint
from sagan.config import IMAGE_SIZES, MODEL_FLAGS, PRESETS, TrainConfig, from_flags, resume_changes
from sagan.data import DataError
from sagan.devices import DEVICES, PRECISIONS, resolve_device
from sagan.sampling import MAX_SEED
from sagan.standing import STANDING_BATCHES
from sagan.training import TrainingError, train

CONFIG_FLAGS = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"} | set(MODEL_FLAGS)


def _resolutions(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated resolutions like 16,32, got {text!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=None)
    a = p.add_argument
    a("--data", help="folder (recursive) or .zip of jpg/png/webp images")
    a("--out", help=f"run directory (default {d.out})")
    a("--steps", type=int, help=f"total training steps (default {d.steps})")
    a("--max-minutes", type=float, help="stop (checkpointed, exported) at the first log or checkpoint step after "
      "this many minutes from the start of training, reading the data included; --resume continues (default 0: no "
      "limit)")
    a("--batch-size", type=int, help=f"images per step (default {d.batch_size})")
    a("--image-size", type=int, choices=IMAGE_SIZES, help=f"output resolution (default {d.model.image_size})")
    a("--preset", choices=PRESETS, help="attention placement: sagan (default), seed or dcgan")
    a("--g-attn", type=_resolutions, help="generator attention resolutions, e.g. 16,32 (overrides the preset)")
    a("--d-attn", type=_resolutions, help="discriminator attention resolutions, e.g. 16,8 (overrides the preset)")
    a("--attn-pool", action=argparse.BooleanOptionalAction, help="2x2 max-pooled attention keys/values")
    a("--attn-dnl", action=argparse.BooleanOptionalAction, help="generator attention: whitened pairwise logits "
      "plus a separate unary branch (Disentangled Non-Local; default off)")
    a("--attn-whiten", action=argparse.BooleanOptionalAction, help="generator attention: whitened pairwise logits "
      "alone, (q - mean q).(k - mean k), so no key is favoured by every query (DNL without its unary branch; "
      "default on)")
    a("--attn-cosine", action=argparse.BooleanOptionalAction, help="generator attention: cosine logits times a "
      "learned scale (init 10, clamped to 100, as Swin V2; default on)")
    a("--attn-cosine-scale", type=float, help="starting scale of the generator's cosine logits, above 0 and at most "
      "100 (default 10, as Swin V2)")
    a("--attn-cosine-fixed", action=argparse.BooleanOptionalAction, help="keep the generator's cosine scale at "
      "--attn-cosine-scale instead of learning it (as DNL's temperature; default off)")
    a("--attn-rel-pos", action=argparse.BooleanOptionalAction, help="generator attention: a learned 2D "
      "relative-position bias per head (default off)")
    a("--attn-heads", type=int, help="generator attention heads per layer, dividing --conv-dim / 8 (default 1)")
    a("--attn-gamma-init", type=float, help="starting weight of the generator's attention branch (default 0)")
    a("--z-dim", type=int, help=f"latent size (default {d.model.z_dim})")
    a("--conv-dim", type=int, help=f"base channel width (default {d.model.conv_dim})")
    a("--lr-g", type=float, help=f"generator learning rate (default {d.lr_g})")
    a("--lr-d", type=float, help=f"discriminator learning rate (default {d.lr_d})")
    a("--beta1", type=float, help=f"Adam beta1 of both networks (default {d.beta1})")
    a("--beta2", type=float, help=f"Adam beta2 of both networks (default {d.beta2})")
    a("--ema-kimg", type=float, help="half-life of the sampled generator's EMA in kimg (default: 10 per 32 images "
      "of the global batch, 20 at batch 64, 80 at 256)")
    a("--ema-rampup", type=float, help=f"EMA half-life ramp-up fraction, 0 for none (default {d.ema_rampup})")
    a("--diffaugment", help='DiffAugment policy, e.g. "color,translation,cutout" (default off)')
    a("--d-steps", type=int, help=f"D updates per G update, each on its own batch (default {d.d_steps})")
    a("--bcr-weight", type=float, help="balanced consistency regularisation: lambda of D's squared change under "
      "--bcr-augment, on real and fake images (Zhao et al. use 10; default 0: off)")
    a("--bcr-augment", help=f"DiffAugment policy bCR augments with (default {d.bcr_augment})")
    a("--topk", type=float, help="top-k G loss: keep the fakes D scores highest, a share falling 1%% per "
      "--topk-kimg from all to this floor (Sinha et al. use 0.5; default 0: off)")
    a("--topk-kimg", type=float, help=f"thousand G images per 1%% fall of top-k's share (default {d.topk_kimg}: "
      "about an epoch of the anime faces)")
    a("--holdout", type=int, help="keep the last N files by name out of training (default 0)")
    a("--max-images", type=int, help="train on the first N files by name of the training split (default 0: all)")
    a("--seed", type=int, help=f"random seed, 0 to {MAX_SEED} (default {d.seed})")
    a("--device", choices=DEVICES, help=f"default {d.device}")
    a("--precision", choices=PRECISIONS, help=f"default {d.precision}: bf16 where the hardware has it")
    a("--compile", action=argparse.BooleanOptionalAction, help="torch.compile G and D")
    a("--cuda-graphs", action=argparse.BooleanOptionalAction, help="replay each training step as one CUDA graph: "
      "far fewer kernel launches from Python (default: on for one-process CUDA runs, off elsewhere)")
    a("--sync-bn", action=argparse.BooleanOptionalAction, help="SyncBatchNorm in G under torchrun (CUDA)")
    a("--log-every", type=int, help=f"default {d.log_every}")
    a("--sample-every", type=int, help=f"default {d.sample_every}")
    a("--ckpt-every", type=int, help=f"default {d.ckpt_every}")
    a("--keep-ckpts", type=int, help=f"periodic checkpoints kept, 0 for all (default {d.keep_ckpts})")
    a("--num-grid", type=int, help=f"faces in each progress grid, seeds 0..N-1 (default {d.num_grid})")
    a("--cache-dir", help="where decoded data sets and reference statistics are cached (default <out>/cache)")
    a("--eval-every", type=int, help="steps between validation FIDs on the --holdout split (or --eval-data), the "
      "best state kept in checkpoints/best.pt (default 0: off)")
    a("--eval-data", help="folder or .zip of validation faces for --eval-every, all its images, e.g. one written by "
      "`python -m sagan.pack --split holdout` (default: the --holdout split of --data)")
    a("--eval-samples", type=int, help=f"generated faces per validation FID (default {d.eval_samples})")
    a("--inception", metavar="PATH", help="TorchScript Inception for --eval-every (default: the "
      f"{inception.WHEEL} wheel's); a resumed run keeps it")
    a("--inception-sha256", metavar="HEX", help="sha256 the --inception file must have (default: the network "
      "FID is defined with); another network's FIDs are not comparable, so a run keeps it")
    a("--resume", nargs="?", const="latest", help="continue from <out>/checkpoints/latest.pt, or from PATH "
      "(a checkpoint or a run directory)")
    a("--export", metavar="PATH.safetensors", help="write the EMA generator here at the end (alone: export <out>)")
    a("--export-dtype", choices=("fp32", "fp16"), help="dtype of exported weights (default fp32)")
    a("--export-best", action="store_true", help="export checkpoints/best.pt (lowest validation FID), not the last")
    a("--standing-stats", type=int, metavar="N", help="batches of 256 fresh latents the exported G_ema's BatchNorm "
      f"statistics are measured on (default {STANDING_BATCHES}; 0: keep those copied from G)")
    a("--no-progress", action="store_true", help="no progress bars (training and validation)")
    return p.parse_args(argv)


# What --export without --data or --resume reads: it exports an existing run and trains nothing.
EXPORT_ONLY_FLAGS = {"out", "export", "export_dtype", "export_best", "standing_stats", "no_progress"}


def main(argv=None) -> int:
    world = int(os.environ.get("WORLD_SIZE", "1"))  # processes under torchrun
    rank = os.environ.get("RANK", "0") if world > 1 else "0"
    main_process = rank == "0"
    # Under torchrun the ranks of one machine meet the same mistake in the flags or files, so one rank
    # per machine (its local rank 0) reports it; the others stay quiet.
    reports = world == 1 or os.environ.get("LOCAL_RANK", "0") == "0"
    who = f"rank {rank}: " if world > 1 else ""
    with contextlib.nullcontext() if reports else contextlib.redirect_stderr(io.StringIO()):
        args = parse_args(argv)
    which = "best" if args.export_best else "latest"
    export_dtype = args.export_dtype or "fp32"
    standing = STANDING_BATCHES if args.standing_stats is None else args.standing_stats
    out = Path(args.out or TrainConfig.out)  # the run's directory; a resumed run's own, once its config is read
    try:
        # (identity, not equality: --standing-stats 0 is given, though 0 == False)
        given = [flag for flag in ("export_best", "export_dtype", "standing_stats")
                 if getattr(args, flag) is not None and getattr(args, flag) is not False]
        if given and not args.export:
            raise TrainingError(f"--{given[0].replace('_', '-')} says how --export writes: "
                                "add --export PATH.safetensors.")
        if standing < 0:
            raise TrainingError(f"--standing-stats must be 0 (keep G's BatchNorm statistics) or more, not {standing}.")
        if args.export:
            check_export_path(args.export)
        if args.export and not args.data and not args.resume:
            ignored = sorted(k for k, v in vars(args).items() if v not in (None, False) and k not in EXPORT_ONLY_FLAGS)
            if ignored:
                raise TrainingError(f"--export without --data or --resume only exports the run in --out, so "
                                    f"{', '.join('--' + k.replace('_', '-') for k in ignored)} would be ignored: "
                                    "add --resume to train first, or leave them out.")
            step = export_run(out, args.export, export_dtype, which, standing)
            print(f"exported the EMA generator of {out} ({which}, step {step}) to {args.export}")
            return 0
        flags = {k: v for k, v in vars(args).items() if v is not None and k in CONFIG_FLAGS}
        resume_from, resumed_out = resume_checkpoint(args.resume, args.out) if args.resume else (None, None)
        if resumed_out:
            flags["out"] = resumed_out
        state = load_training_state(resume_from) if resume_from else None
        cfg = from_flags(flags, state["config"] if state else None)
        out = Path(cfg.out)
        if not cfg.data:
            raise TrainingError("no data: pass --data FOLDER_OR_ZIP.")
        validated = cfg.eval_every > 0 and (cfg.holdout > 0 or bool(cfg.eval_data))
        if args.export_best and not validated:
            raise TrainingError("--export-best exports the state with the lowest validation FID: add --eval-every N "
                                "and --holdout N (or --eval-data), which measure it.")
        if args.eval_data and not cfg.eval_every > 0:
            raise TrainingError("--eval-data names the faces --eval-every measures FID against: add --eval-every N, "
                                "or leave it out.")
        for flag in ("inception", "inception_sha256"):
            if getattr(args, flag) and not cfg.eval_every > 0:
                raise TrainingError(f"--{flag.replace('_', '-')} names the network --eval-every measures FID with: "
                                    "add --eval-every N and --holdout N, or leave it out.")
        extractor = None
        if validated and main_process:
            extractor = inception.load(cfg.inception or None, resolve_device(cfg.device), cfg.inception_sha256,
                                       fixed=state is not None and "inception_sha256" in state["config"])
        changes = resume_changes(state["config"], cfg) if state else []
        if changes and main_process:  # flushed: a log file shows it now, not when the run ends
            print(f"resuming with changed settings: {', '.join(changes)}", flush=True)
        models = train(cfg, resume_state=state, export=None if args.export_best else args.export,
                       export_dtype=export_dtype, progress=not args.no_progress, extractor=extractor,
                       resume_from=resume_from, standing_batches=standing)
        if main_process:
            print(f"trained to step {models.step}; the run is in {out}" if models.step >= cfg.steps else
                  f"stopped by --max-minutes at step {models.step} of {cfg.steps}: continue with --resume {out}")
        if args.export and main_process:
            step = export_run(cfg.out, args.export, export_dtype, "best", standing) if args.export_best else models.step
            print(f"exported the EMA generator ({which}, step {step}) to {args.export}")
    except (DataError, CheckpointError, TrainingError, ValueError) as e:
        if reports:
            print(f"{'' if main_process else who}error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a directory that became unwritable mid-run: it may be this rank's alone
        print(f"{who}error: cannot read or write {e.filename or 'a file'}: {e.strerror or e}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        latest = out / "checkpoints" / "latest.pt"
        if main_process:
            print("interrupted: " + (f"continue from the last checkpoint ({latest}) with --resume." if latest.is_file()
                                     else "no checkpoint was written yet (one every --ckpt-every steps), so there "
                                          "is nothing to resume."), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # A warning (skipped images) as one line, without the source line Python's format adds.
    warnings.formatwarning = lambda message, category, *rest, **kwargs: f"warning: {message}\n"
    # SIGTERM (kill, a scheduler's preemption, torchrun stopping the other ranks) ends a run as Ctrl-C
    # does: with a line saying where to resume from, not silently.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
