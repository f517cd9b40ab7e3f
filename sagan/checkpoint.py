"""Checkpoint I/O: full training states (torch, weights only) and exported generators (safetensors).

Nothing here unpickles code: training states load with ``weights_only=True`` and exported
weights are safetensors with the model config as JSON in their metadata.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from safetensors import safe_open

from .atomic import atomic_write, why_unwritable
from .config import ModelConfig, TrainConfig
from .networks import Generator
from .standing import STANDING_BATCH_SIZE, STANDING_BATCHES, standing_statistics

STATE_VERSION = 1
EXPORT_FORMAT = "sagan-anime/generator/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with a message that says why."""


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """A crash mid-write never leaves a torn checkpoint (see atomic.py)."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def load_training_state(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles carrying code and corrupt files both land here
        # torch's own text suggests weights_only=False, which would run the code: name the culprit only.
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        why = (f"it would import {culprit.group(1)}: files that carry code are refused" if culprit
               else "it is not a file torch.save wrote, or it holds more than tensors and containers")
        raise CheckpointError(f"{str(path)!r} is not a loadable sagan-anime training checkpoint ({why}).") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{str(path)!r} is not a sagan-anime training checkpoint of version {STATE_VERSION}.")
    return state


def resume_checkpoint(resume: str, out: str | None) -> tuple[Path, str | None]:
    """The checkpoint train.py's ``--resume`` names, and the run directory to continue in when ``out``
    (--out) is not given: ``"latest"`` (--resume alone) is the run in ``out``; a run directory its
    checkpoints/latest.pt; a checkpoint file in a run's checkpoints/ continues in that run, moved or not."""
    if resume == "latest":
        path, run = Path(out or TrainConfig.out) / "checkpoints" / "latest.pt", None
    else:
        path = Path(resume) / "checkpoints" / "latest.pt" if Path(resume).is_dir() else Path(resume)
        run = str(path.parent.parent) if not out and path.parent.name == "checkpoints" else None
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: no checkpoint at {str(path)!r}. Start a new run with --data "
                              "FOLDER_OR_ZIP (no --resume), or point --out at an existing run.")
    return path, run


def export_run(run_dir: str | os.PathLike, path: str | os.PathLike, dtype: str = "fp32", which: str = "latest",
               standing_batches: int = STANDING_BATCHES) -> int:
    """Export the EMA generator of a run's checkpoints/<which>.pt (``latest``, ``best``, ``step-0002000``)
    without training, with ``standing_batches`` of standing statistics (see export_generator); returns its step."""
    if Path(run_dir).is_file():
        raise CheckpointError(f"{str(run_dir)!r} is a file: --out names a run directory, the one holding checkpoints/.")
    source = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if not source.is_file():
        raise CheckpointError(
            f"no {source}: only runs trained with --eval-every and --holdout keep a best checkpoint." if which == "best"
            else f"nothing to export: no checkpoint at {str(source)!r}. --export alone exports the run in --out DIR; "
                 "check --out, or train first with --data.")
    state = load_training_state(source)
    g = Generator(TrainConfig.from_dict(state["config"]).model)
    g.load_state_dict(state["G_ema"])
    export_generator(g, path, dtype=dtype, step=int(state["step"]), standing_batches=standing_batches,
                     training=state["config"])
    return int(state["step"])


def refresh_export(source: str | os.PathLike, path: str | os.PathLike,
                   standing_batches: int = STANDING_BATCHES) -> dict:
    """Export ``source``'s generator again to ``path`` (which may be ``source``) with standing statistics
    measured now, in the dtype it was saved in and with its step: for files exported before export measured
    them, or with another batch count. Returns the new file's metadata."""
    g = load_generator(source)
    metadata = read_export_metadata(source)
    step, training = metadata.get("step"), metadata.get("training")
    with safe_open(str(source), framework="pt") as f:
        dtype = "fp16" if any(f.get_slice(k).get_dtype() == "F16" for k in f.keys()) else "fp32"
    export_generator(g, path, dtype=dtype, step=None if step is None else int(step), standing_batches=standing_batches,
                     training=None if training is None else json.loads(training))
    return read_export_metadata(path)


def export_generator(g: Generator, path: str | os.PathLike, dtype: str = "fp32", step: int | None = None,
                     standing_batches: int = STANDING_BATCHES, training: dict | None = None) -> None:
    """Save a generator's weights as safetensors, its ModelConfig in the metadata. Its BatchNorm statistics are
    first measured on ``standing_batches`` batches of its own faces (standing.py; 0: saved as they are), and the
    metadata says how many (``standing_stats_batches``; files exported before this have no such entry).
    ``training``, the run's TrainConfig as a dict, goes in as ``training`` (without its model, which ``config``
    holds), so a file says which data, recipe, seed and run made it."""
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"export dtype must be fp32 or fp16, not {dtype!r}.")
    path = check_export_path(path)
    g = standing_statistics(g, standing_batches)
    target = torch.float16 if dtype == "fp16" else torch.float32
    tensors = {k: (v.to(target) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in g.state_dict().items()}
    metadata = {"format": EXPORT_FORMAT, "config": json.dumps(dataclasses.asdict(g.cfg)),
                "standing_stats_batches": str(standing_batches)}
    if standing_batches:
        metadata["standing_stats_batch_size"] = str(STANDING_BATCH_SIZE)
    if step is not None:
        metadata["step"] = str(step)
    if training is not None:
        metadata["training"] = json.dumps({k: v for k, v in training.items() if k != "model"})
    # Serialised in memory and written as bytes rather than with safetensors' save_file, which creates files
    # readable by their owner only: an app running as another user (a container, a Space) must read them.
    data = save(tensors, metadata=metadata)
    try:
        with atomic_write(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise CheckpointError(f"cannot write {str(path)!r}: {e.strerror or e}. Choose another --export path.") from None


def check_export_path(path: str | os.PathLike) -> Path:
    """``path`` if weights can be exported there, else CheckpointError: checked before training, not after."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot export to {str(path)!r}: it is a directory; give a file path such as "
                              f"{str(path / 'generator.safetensors')!r}.")
    why = why_unwritable(path.parent)
    if why:
        raise CheckpointError(f"cannot export to {str(path)!r}: {why}. Choose another --export path.")
    if path.exists():  # an earlier export may be replaced, nothing else (a checkpoint, a data set)
        try:
            read_export_metadata(path)
        except CheckpointError:
            raise CheckpointError(f"will not export to {str(path)!r}: it exists and is not a generator exported "
                                  "by sagan-anime. Choose another --export path.") from None
    return path


def read_export_metadata(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no generator weights at {str(path)!r}: pass the .safetensors file train.py "
                              "exported (--export).")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        if _saved_by_torch(path):  # a training checkpoint
            raise CheckpointError(f"{str(path)!r} is a training checkpoint, not a safetensors file: export its "
                                  "generator with `python train.py --out RUN_DIR --export G.safetensors` "
                                  "and load that.") from None
        raise CheckpointError(f"{str(path)!r} is not a safetensors file: {e}") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{str(path)!r} was not exported by sagan-anime (metadata format "
                              f"{metadata.get('format')!r}, expected {EXPORT_FORMAT!r}).")
    return metadata


def _saved_by_torch(path: Path) -> bool:
    """Whether ``path`` is what torch.save writes: a zip holding a pickle (a data set's zip is not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def export_config(path: str | os.PathLike) -> ModelConfig:
    """The model config an exported generator carries in its metadata."""
    metadata = read_export_metadata(path)
    try:
        return ModelConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{str(path)!r} has an unusable model config: {e}") from None


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """An exported generator, fp32, in eval mode. Mismatched weights are refused, never half-loaded."""
    g = Generator(export_config(path))
    tensors = load_file(str(path))
    expected = g.state_dict()
    missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
    wrong = [k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{str(path)!r} does not match its own config: missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}, wrong shape {sorted(wrong)[:3]}.")
    g.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return g.eval().requires_grad_(False).to(device)
