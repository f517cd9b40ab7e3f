"""FID, KID, precision and recall of an exported generator against a reference set of real images.

    python -m sagan.evaluate --checkpoint PATH.safetensors --reference DATA [--holdout N]
        [--num-samples N] [--truncation T] [--batch-size N] [--run DIR] [--device auto|cpu|cuda]
        [--cache-dir DIR] [--inception PATH] [--inception-sha256 HEX]

The generated faces are those of seeds 0..N-1 from the exported EMA generator in eval mode, without
truncation unless ``--truncation`` gives the app's slider value: what the app shows (on the CPU bit
for bit; a GPU may round a colour level apart).
The reference is a folder or .zip of images, decoded at the generator's resolution like training
data (``--holdout N``: only the last N files by name, the validation split), or an .npz written by
this tool. Reference features are cached in ``--cache-dir`` as such an .npz, keyed by the files,
the resolution, the split and the feature network, so a reference set is encoded once.

Features come from any ``extractor(uint8 (B, 3, H, W)) -> (B, D)`` callable; the CLI uses the
standard Inception network (sagan.inception). With ``--run``, the result is appended to
``<run>/metrics.jsonl``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import inception, metrics
from .attention_metrics import FACES, generator_report, report_lines
from .atomic import atomic_write, why_unwritable
from .checkpoint import export_config, load_generator, read_export_metadata
from .config import ModelConfig
from .data import cache_key, list_images, load_images
from .devices import DEVICES, resolve_device
from .explore import TRUNCATION_MIN, TRUNCATION_OFF, truncation_threshold
from .sampling import generate, latents

Extractor = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_NUM_SAMPLES = 10_000


class EvaluationError(ValueError):
    """An evaluation input that cannot be used, with a message that names the fix."""


def extract_features(images: torch.Tensor, extractor: Extractor, batch_size: int, desc: str,
                     progress: bool = True) -> torch.Tensor:
    """Features (N, D) of uint8 images (N, 3, H, W), in batches, with a progress bar unless told not to."""
    out = []
    with tqdm(total=images.shape[0], desc=desc, unit="img", disable=not progress) as bar:
        for i in range(0, images.shape[0], batch_size):
            out.append(extractor(images[i:i + batch_size]))
            bar.update(out[-1].shape[0])
    return torch.cat(out)


def generated_features(g: torch.nn.Module, num_samples: int, extractor: Extractor, batch_size: int,
                       progress: bool = True, truncation: float | None = None) -> torch.Tensor:
    """Features of the faces of seeds 0..num_samples-1 (``truncation``: a threshold for sampling.latent),
    generated and encoded batch by batch."""
    out = []
    with tqdm(total=num_samples, desc="generated", unit="img", disable=not progress) as bar:
        for start in range(0, num_samples, batch_size):
            seeds = range(start, min(start + batch_size, num_samples))
            faces = generate(g, latents(seeds, g.cfg.z_dim, truncation), batch_size)
            out.append(extractor(torch.from_numpy(faces).permute(0, 3, 1, 2)))
            bar.update(len(seeds))
    return torch.cat(out)


def save_reference(path: Path, features: torch.Tensor, image_size: int, network_sha256: str) -> None:
    mu, sigma = metrics.statistics(features)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu.numpy(), sigma=sigma.numpy(), features=features.numpy(),
                 image_size=image_size, network=network_sha256)


def load_reference(path: Path, image_size: int, network_sha256: str) -> dict:
    """mu, sigma and (when stored) features of a reference .npz, refused if made for another setup."""
    if not path.is_file():
        raise EvaluationError(f"no reference statistics at {str(path)!r}: pass a folder, a .zip or an .npz "
                              "written by sagan.evaluate.")
    not_statistics = (f"{str(path)!r} is not reference statistics written by sagan.evaluate ({{}}): pass the .npz "
                      "it wrote, or the image folder or .zip to compute them from.")
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except OSError as e:
        raise EvaluationError(f"cannot read {str(path)!r}: {e.strerror or e}.") from None
    except (ValueError, TypeError, EOFError, zipfile.BadZipFile):
        # Not numpy's message: it advises allow_pickle=True, which runs whatever code a crafted file carries.
        # (A .npy gives an array, not an archive, and fails as a context manager: the TypeError.)
        raise EvaluationError(not_statistics.format("not an .npz archive of plain arrays")) from None
    mu, sigma, features = (stored.get(k) for k in ("mu", "sigma", "features"))
    if not (_numeric(mu, 1) and _numeric(sigma, 2) and sigma.shape == 2 * mu.shape):
        raise EvaluationError(not_statistics.format("no FID statistics: a vector 'mu' and a square matrix 'sigma' "
                                                    "of its size"))
    if features is not None and not (_numeric(features, 2) and features.shape[1:] == mu.shape):
        raise EvaluationError(not_statistics.format("its 'features' are not vectors of the size of 'mu'"))
    if "image_size" in stored and int(stored["image_size"]) != image_size:
        raise EvaluationError(f"{str(path)!r} was computed at {int(stored['image_size'])} px but the generator "
                              f"makes {image_size} px faces: pass the image folder to recompute it.")
    if "network" in stored and str(stored["network"]) != network_sha256:
        raise EvaluationError(f"{str(path)!r} was computed with feature network {str(stored['network'])[:16]}…, "
                              f"not {network_sha256[:16]}…: pass the image folder to recompute it.")
    return {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma),
            "features": None if features is None else torch.from_numpy(features)}


def _numeric(array, ndim: int) -> bool:
    """Whether ``array`` is an array of numbers with ``ndim`` axes: an .npz member that is no .npy loads as bytes."""
    return isinstance(array, np.ndarray) and array.ndim == ndim and array.dtype.kind in "fiu"


def reference_cache_path(reference: Path, holdout: int, image_size: int, network_sha256: str, cache_dir: Path) -> Path:
    files = cache_key(reference, list_images(reference), image_size)
    key = hashlib.sha256(f"{files}|holdout={holdout}|{network_sha256}".encode()).hexdigest()[:20]
    return cache_dir / f"reference-{key}.npz"


def check_reference(reference: str | Path, holdout: int, cache_dir: str | Path, image_size: int,
                    network_sha256: str) -> None:
    """Refuse, without decoding an image, a reference that cannot give a FID or a --cache-dir that cannot hold its
    statistics (one that already holds them may be read-only): the CLI calls this before it loads Inception, and
    reading the images takes longer still."""
    reference = Path(reference)
    if reference.suffix.lower() == ".npz":
        if holdout:
            raise EvaluationError(f"--holdout selects files of an image folder or .zip; {str(reference)!r} already "
                                  "holds the statistics of a fixed image set: leave --holdout out.")
        return  # its statistics are read as they are: nothing is cached
    names = list_images(reference)
    if not names:
        return  # load_images explains this in its own words
    if not 0 <= holdout < len(names):
        raise EvaluationError(f"--holdout {holdout} is not between 0 and {len(names) - 1}, one less than the "
                              f"{len(names)} image files in {str(reference)!r}: pass a --holdout in that range "
                              "(0: all of them).")
    if holdout == 1:
        raise EvaluationError("--holdout 1 selects 1 reference image and a FID needs at least 2: pass --holdout 2 "
                              "or more.")
    if len(names) < 2:
        raise EvaluationError(f"--reference {str(reference)!r} holds 1 image and a FID needs at least 2: pass a "
                              "folder or .zip of more images.")
    why = why_unwritable(cache_dir)
    # A read-only cache that already holds these statistics serves them as well as any.
    if why and not reference_cache_path(reference, holdout, image_size, network_sha256, Path(cache_dir)).is_file():
        raise EvaluationError(f"cannot write --cache-dir {str(cache_dir)!r}: {why}. Choose another --cache-dir.")


def reference_statistics(reference: str | Path, image_size: int, extractor: Extractor, network_sha256: str,
                         holdout: int = 0, batch_size: int = 64, cache_dir: str | Path = ".cache",
                         progress: bool = True) -> dict:
    """mu, sigma, features and image count of the reference set, from the cache when it is there, and what
    ``score`` records of it: the reference as given, the holdout and the feature network's sha256."""
    given, reference = str(reference), Path(reference)  # recorded as given, not normalised
    check_reference(reference, holdout, cache_dir, image_size, network_sha256)
    if reference.suffix.lower() == ".npz":
        stats = load_reference(reference, image_size, network_sha256)
    else:
        cached = reference_cache_path(reference, holdout, image_size, network_sha256, Path(cache_dir))
        if not cached.is_file():
            images = load_images(reference, image_size, holdout=holdout, split="holdout" if holdout else "all")
            if images.shape[0] < 2:  # files that could not be decoded were skipped
                raise EvaluationError(f"only {images.shape[0]} of the selected reference images in {str(reference)!r} "
                                      "could be decoded and a FID needs at least 2: replace the damaged files.")
            save_reference(cached, extract_features(images, extractor, batch_size, "reference", progress),
                           image_size, network_sha256)
        stats = load_reference(cached, image_size, network_sha256)
        stats["cache"] = str(cached)
    stats["count"] = None if stats["features"] is None else int(stats["features"].shape[0])
    stats.update(reference=given, holdout=holdout, network_sha256=network_sha256)
    return stats


def score(g: torch.nn.Module, ref: dict, extractor: Extractor, num_samples: int, batch_size: int = 64,
          progress: bool = True, truncation: float | None = None) -> dict:
    """A metrics.jsonl entry: FID, and KID, precision and recall (None when the reference has no features;
    precision and recall also when either set has no more than metrics.NEIGHBOURS) of generator ``g``'s seeds
    0..num_samples-1 (``truncation``: a threshold for sampling.latent, None for none) against ``ref`` (from
    reference_statistics), what they were measured against, and how much each attention layer's maps depend
    on the query (attention_metrics.generator_report over seeds 0..63, keyed by layer name)."""
    features = generated_features(g, num_samples, extractor, batch_size, progress, truncation)
    mu, sigma = metrics.statistics(features)
    real = ref["features"]
    precision, recall = None, None
    if real is not None and min(real.shape[0], num_samples) > metrics.NEIGHBOURS:
        precision, recall = metrics.precision_recall(real, features)
    # .get: statistics from load_reference alone say nothing of where they came from.
    return {"time": now(), "reference": ref.get("reference"), "holdout": ref.get("holdout"),
            "num_samples": num_samples, "truncation": truncation, "num_reference": ref.get("count"),
            "network": ref.get("network_sha256"),
            "fid": metrics.fid_from_statistics(mu, sigma, ref["mu"], ref["sigma"]),
            "kid": None if real is None else metrics.kid(features, real), "precision": precision, "recall": recall,
            "attention": generator_report(g)}


def evaluate(checkpoint: str | Path, reference: str | Path, extractor: Extractor, network_sha256: str, holdout: int = 0,
             num_samples: int = DEFAULT_NUM_SAMPLES, batch_size: int = 64, cache_dir: str | Path = ".cache",
             device: str | torch.device = "cpu", truncation: float | None = None) -> dict:
    """FID, KID, precision and recall of an exported generator (see ``score``); ``network_sha256`` names the
    extractor."""
    step = read_export_metadata(checkpoint).get("step")
    g = load_generator(checkpoint, device)
    ref = reference_statistics(reference, g.cfg.image_size, extractor, network_sha256, holdout, batch_size, cache_dir)
    return {"checkpoint": str(checkpoint), "step": None if step is None else int(step),
            **score(g, ref, extractor, num_samples, batch_size, truncation=truncation),
            "reference_cache": ref.get("cache")}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _at_least(minimum: int):
    """An argparse type: a whole number no smaller than ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sagan.evaluate", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--checkpoint", required=True, metavar="PATH.safetensors", help="exported generator (train.py --export)")
    a("--reference", required=True, metavar="DATA",
      help="folder or .zip of real images, or an .npz of reference statistics written by this tool")
    a("--holdout", type=int, default=0, metavar="N",
      help="use only the last N files by name (the validation split train.py --holdout N kept out); 0: all")
    a("--num-samples", type=_at_least(2), default=DEFAULT_NUM_SAMPLES, metavar="N",
      help="generated faces, seeds 0..N-1 (a FID needs at least 2)")
    a("--truncation", type=float, default=None, metavar="T",
      help=f"the app's truncation, {TRUNCATION_MIN} to {TRUNCATION_OFF} ({TRUNCATION_OFF} = off; default off)")
    a("--inception", metavar="PATH", help="the TorchScript Inception file (default: the one in the "
      f"{inception.WHEEL} wheel)")
    a("--inception-sha256", default=inception.INCEPTION_SHA256, metavar="HEX",
      help="expected sha256 of the network file: change it only to measure with another network on purpose")
    a("--batch-size", type=_at_least(1), default=64, metavar="N", help="images per forward pass")
    a("--run", metavar="DIR", help="run directory: append the result to DIR/metrics.jsonl")
    a("--cache-dir", default=".cache", metavar="DIR", help="where reference statistics are cached")
    a("--device", choices=DEVICES, default="auto", help="auto: cuda when available")
    return p.parse_args(argv)


def check_run(run: str | Path, checkpoint: str | Path) -> None:
    """Refuse a ``--run`` that is no training run's directory, or whose config.json trained another network
    than ``checkpoint``: its metrics.jsonl would mix in another model's FID."""
    run = Path(run)
    if not run.exists():
        raise EvaluationError(f"--run {str(run)!r} does not exist: pass the --out of a training run.")
    if not run.is_dir():
        raise EvaluationError(f"--run {str(run)!r} is a file, not a directory: pass the --out of a training run.")
    # Every run train.py ever made wrote config.json first: without one the folder is no run.
    if not (run / "config.json").is_file():
        raise EvaluationError(f"--run {str(run)!r} is not a training run's --out: it has no config.json. Pass the "
                              "run the checkpoint was exported from, or leave --run out.")
    try:
        trained = ModelConfig.from_dict(json.loads((run / "config.json").read_text())["model"])
    except (KeyError, ValueError, TypeError) as e:
        raise EvaluationError(f"{str(run / 'config.json')!r} is not a run's config: {e}") from None
    if trained != export_config(checkpoint):
        raise EvaluationError(f"--run {str(run)!r} trained another network than {str(checkpoint)!r}: pass the run "
                              "the checkpoint was exported from, or leave --run out.")


def append_metrics(run: str | Path, result: dict | None = None) -> None:
    """Append ``result`` to ``run``'s metrics.jsonl; with no result, only open it to append, which the CLI does
    before the evaluation so that a file that cannot be written is found out before the minutes it takes."""
    path = Path(run) / "metrics.jsonl"
    try:
        with open(path, "a") as f:
            if result is not None:
                f.write(json.dumps(result) + "\n")
    except OSError as e:
        where = f"{str(path)!r} ({e.strerror or e})"
        if result is None:
            raise EvaluationError(f"--run {str(run)!r}: cannot append to {where}: pass a run you can write to, or "
                                  "leave --run out.") from None
        raise EvaluationError(f"--run {str(run)!r}: the result printed above could not be appended to {where}: "
                              "record it by hand, or evaluate again once the file can be written.") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    network_sha256 = args.inception_sha256.lower()
    try:
        threshold = None if args.truncation is None else truncation_threshold(args.truncation)
        device = resolve_device(args.device)
        if args.run:
            check_run(args.run, args.checkpoint)
        check_reference(args.reference, args.holdout, args.cache_dir, export_config(args.checkpoint).image_size,
                        network_sha256)
        if args.run:
            append_metrics(args.run)
        extractor = inception.load(args.inception, device, args.inception_sha256)
        result = evaluate(args.checkpoint, args.reference, extractor, network_sha256, args.holdout, args.num_samples,
                          args.batch_size, args.cache_dir, device, threshold)
        if result["kid"] is None:
            rest = "KID, precision, recall n/a (no reference features)"
        elif result["precision"] is None:
            rest = f"KID {result['kid']:.6f}  precision, recall n/a (more than {metrics.NEIGHBOURS} faces needed)"
        else:
            rest = f"KID {result['kid']:.6f}  precision {result['precision']:.3f}  recall {result['recall']:.3f}"
        truncated = "" if threshold is None else f" at truncation {threshold:g}"
        print(f"FID {result['fid']:.4f}  {rest}  ({result['num_samples']} generated{truncated}, "
              f"{result['num_reference'] or 'unknown number of'} reference images)")
        print(f"attention over the faces of seeds 0..{FACES - 1}:")
        for line in report_lines(result["attention"]):
            print("  " + line)
        if result["reference_cache"]:
            print(f"reference statistics: {result['reference_cache']} (pass it as --reference to reuse them)")
        if args.run:
            append_metrics(args.run, result)
    except (ValueError, OSError) as e:  # CheckpointError, DataError, InceptionError, EvaluationError, I/O
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
