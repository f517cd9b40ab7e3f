"""Image data sets: a folder (searched recursively) or a .zip of jpg/png/webp files.

Images are decoded once — RGB conversion, centre crop to a square, antialiased resize — into a
uint8 array cached on disk, so later runs and epochs never decode a JPEG again. Files that cannot
be decoded are skipped and counted in one warning; a zip of password-protected images is refused.
Batches are drawn without any hidden state: the images of step t are a function of (seed, t), which
makes resuming exact.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
CACHE_VERSION = 1
MAX_PIXELS = 64_000_000  # larger files are skipped before decoding rather than filling memory


class DataError(ValueError):
    """A data set that cannot be used, with a message that says why and what to do."""


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS) and not Path(name).name.startswith(".")


def list_images(path: str | os.PathLike) -> list[str]:
    """Names of the image files in a folder (relative, recursive) or a zip, sorted."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {str(path)!r} does not exist: pass a folder or a .zip of images.")
    if path.is_dir():
        return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and _is_image_name(p.name))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and _is_image_name(i.filename)]
        # Refused rather than skipped like a damaged member: the images are intact, only locked, and one
        # extraction unlocks them all.
        encrypted = [i.filename for i in infos if i.flag_bits & 0x1]
        if encrypted:
            raise DataError(f"{str(path)!r} is password-protected ({len(encrypted)} of {len(infos)} images encrypted, "
                            f"e.g. {encrypted[0]!r}): extract it with its password and pass the folder.")
        return sorted(i.filename for i in infos)
    if path.suffix.lower() == ".zip":
        raise DataError(f"{str(path)!r} is not a readable zip archive (truncated or corrupt?): "
                        "copy or create it again.")
    raise DataError(f"data path {str(path)!r} is neither a folder nor a .zip file.")


def read_files(path: Path, names: list[str]) -> list[bytes | None]:
    """Each file's bytes; None for one that cannot be read (a damaged zip member, an unreadable file),
    which is then skipped like an image that cannot be decoded."""
    def read(read_one, name):
        try:
            return read_one(name)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError):
            return None  # NotImplementedError: a zip compression method Python cannot decompress
    if path.is_dir():
        return [read(lambda n: (path / n).read_bytes(), n) for n in names]
    with zipfile.ZipFile(path) as zf:
        return [read(zf.read, n) for n in names]


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any PIL mode; transparent pixels are laid on white rather than on arbitrary colour."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # A 16-bit grayscale PNG (I;16, or I in older Pillow): convert() would clip every value above 255 to
        # white, so keep the top 8 of its 16 bits instead.
        img = Image.fromarray((np.clip(np.asarray(img), 0, 65535) >> 8).astype(np.uint8))
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, image_size: int) -> np.ndarray | None:
    """Decode, crop to the central square and resize; None when the bytes are not a usable image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                return None
            img.load()
            img = to_rgb(img)
    except Exception:  # PIL raises many types for broken, truncated or decompression-bomb files
        return None
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != image_size:
        img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def cache_key(path: Path, names: list[str], image_size: int) -> str:
    """Identifies a decoded data set and its resolution: a folder by its location and its files' names,
    sizes and mtimes; a zip by its members' names, sizes and CRC-32s, so a copied archive keeps its key."""
    if path.is_dir():
        h = hashlib.sha256(f"{CACHE_VERSION}|{path.resolve()}|{image_size}".encode())
        for n in names:
            st = (path / n).stat()
            h.update(f"{n}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    else:
        h = hashlib.sha256(f"{CACHE_VERSION}|zip|{image_size}".encode())
        with zipfile.ZipFile(path) as zf:
            for n in names:
                info = zf.getinfo(n)
                h.update(f"{n}|{info.file_size}|{info.CRC}\n".encode())
    return h.hexdigest()[:20]


def check_split(path: str | os.PathLike, names: list[str], holdout: int) -> None:
    """Refuse a data set (``names``, its list_images) that has no images, or none left after ``holdout``."""
    if not names:
        raise DataError(f"no images ({', '.join(EXTENSIONS)}) found in {str(path)!r}.")
    if holdout < 0 or holdout >= len(names):
        raise DataError(f"--holdout {holdout} must be between 0 and the number of image files ({len(names)}) - 1.")


def load_images(path: str | os.PathLike, image_size: int, cache_dir: str | os.PathLike | None = None,
                holdout: int = 0, split: str = "train", max_files: int = 0) -> torch.Tensor:
    """All usable images of a data set as a uint8 tensor (N, 3, S, S).

    ``holdout`` keeps the last N files by name apart: ``split="train"`` gives the rest,
    ``split="holdout"`` gives those N. ``max_files`` keeps the split's first files by name only (0:
    all), so a small run decodes and caches no more than it trains on.
    """
    if split not in ("train", "holdout", "all"):
        raise ValueError(f"split must be train, holdout or all, not {split!r}.")
    path = Path(path)
    names = list_images(path)
    check_split(path, names, holdout)
    cut = len(names) - holdout
    names = {"train": names[:cut], "holdout": names[cut:], "all": names}[split][:max_files or None]

    cache_file = None
    if cache_dir:
        cache_file = Path(cache_dir) / f"images-{cache_key(path, names, image_size)}.npy"
        if cache_file.exists():
            return torch.from_numpy(np.load(cache_file))

    blobs = read_files(path, names)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda b: None if b is None else decode_image(b, image_size), blobs, chunksize=64))
    bad = [n for n, d in zip(names, decoded) if d is None]
    good = [d for d in decoded if d is not None]
    if bad:
        warnings.warn(f"skipped {len(bad)} of {len(names)} files that could not be read or decoded as images "
                      f"(e.g. {', '.join(bad[:3])}).", stacklevel=2)
    if not good:
        raise DataError(f"none of the {len(names)} image files in {str(path)!r} could be decoded.")
    images = np.ascontiguousarray(np.stack(good).transpose(0, 3, 1, 2))
    if cache_file is not None:
        with atomic_write(cache_file) as tmp, open(tmp, "wb") as f:  # (a file object: np.save adds no .npy)
            np.save(f, images)
    return torch.from_numpy(images)


def stream_seed(seed: int, step: int, stream: int = 0) -> int:
    """Seed of one random stream of one training step: a pure function of (seed, step, stream).

    Separate streams keep flips, latents and augmentation uncorrelated though drawn from one seed.
    """
    return ((seed * 1_000_003 + step) * 4096 + stream) % (2 ** 63)


def batch_indices(num_images: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Indices of step ``step``'s batch: consecutive slices of a fresh permutation per epoch."""
    start = step * batch_size
    chunks, pos = [], start
    while pos < start + batch_size:
        epoch, offset = divmod(pos, num_images)
        perm = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        take = min(num_images - offset, start + batch_size - pos)
        chunks.append(perm[offset:offset + take])
        pos += take
    return torch.cat(chunks)


def real_batch(images: torch.Tensor, indices: torch.Tensor, flip_gen: torch.Generator, rank: int = 0,
               world: int = 1) -> torch.Tensor:
    """Rank ``rank``'s share (``indices``, on the device of ``images``) of a step's global batch, as
    floats in [-1, 1]; ``flip_gen`` flips every image of the global batch with probability 1/2."""
    b = indices.shape[0]
    x = images[indices].float().div_(127.5).sub_(1.0)
    flip = (torch.rand(b * world, generator=flip_gen, device=images.device) < 0.5)[rank * b:(rank + 1) * b]
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
