"""Pack a data set small enough to travel with the code: its training split re-encoded at training
resolution, or its validation split copied as it is.

    python -m sagan.pack --data FACES.zip --out faces64.zip --holdout 2000 [--size 64] [--format webp]
        [--quality 85]
    python -m sagan.pack --data FACES.zip --out validation.zip --holdout 2000 --split holdout

``--split train`` (the default) writes every file but the last ``--holdout`` by name, decoded as
training decodes it (RGB, centre square, Lanczos to ``--size``) and encoded as WebP or JPEG at
``--quality``. Members are named by their position (``000000.webp``, ...), so the packed files sort
as the originals did; a file that cannot be decoded is skipped, as training would skip it.
``--split holdout`` copies the last ``--holdout`` files byte for byte under their own names, so a
FID against that zip (train.py ``--eval-data``, sagan.evaluate ``--reference``) is a FID against the
original validation faces. Either way the zip's comment records what it holds, and the same input
gives the same bytes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_write, why_unwritable
from .data import DataError, read_files, check_split, decode_image, list_images

# Pillow format, file extension and encoder options; WebP's slowest method compresses best.
FORMATS = {"webp": ("WEBP", ".webp", {"method": 6}), "jpeg": ("JPEG", ".jpg", {})}
PACK_FORMAT = "sagan-anime/pack/1"
CHUNK = 1024  # files read and encoded at a time, so memory holds a chunk, not the data set
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every member's timestamp: the same input packs to the same bytes


@dataclass
class Packed:
    files: int      # images written
    skipped: int    # files that could not be read or decoded
    bytes: int      # size of the zip


def encode(image: np.ndarray, image_format: str, quality: int) -> bytes:
    """uint8 (H, W, 3) as the bytes of one ``image_format`` (a FORMATS key) file at ``quality``."""
    pil_format, _, options = FORMATS[image_format]
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=pil_format, quality=quality, **options)
    return out.getvalue()


def pack(data: str | os.PathLike, out: str | os.PathLike, holdout: int, size: int = 64, image_format: str = "webp",
         quality: int = 85, split: str = "train") -> Packed:
    """Write ``data``'s ``split`` (train: all files but the last ``holdout`` by name, re-encoded; holdout: those
    last files, copied) to the zip ``out``."""
    if split not in ("train", "holdout"):
        raise ValueError(f"--split must be train or holdout, not {split!r}.")
    if image_format not in FORMATS:
        raise ValueError(f"--format must be {' or '.join(FORMATS)}, not {image_format!r}.")
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality must be from 1 to 100, not {quality}.")
    if size < 8:
        raise ValueError(f"--size must be at least 8 pixels, not {size}.")
    if split == "holdout" and holdout < 2:
        raise ValueError(f"--split holdout copies the last --holdout files, and a FID needs at least 2: pass "
                         f"--holdout 2 or more, not {holdout}.")
    data, out = Path(data), Path(out)
    names = list_images(data)
    check_split(data, names, holdout)
    check_output(out, data)
    cut = len(names) - holdout
    names = names[:cut] if split == "train" else names[cut:]
    comment = {"format": PACK_FORMAT, "source": data.name, "split": split, "holdout": holdout}
    if split == "train":
        comment.update(size=size, image_format=image_format, quality=quality)
    written = skipped = 0
    width = max(6, len(str(len(names) - 1)))
    with atomic_write(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for start in range(0, len(names), CHUNK):
            chunk = names[start:start + CHUNK]
            blobs = read_files(data, chunk)
            if split == "train":
                with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                    blobs = list(pool.map(lambda b: _reencode(b, size, image_format, quality), blobs))
            for name, blob in zip(chunk, blobs):
                if blob is None:
                    skipped += 1
                    continue
                member = f"{written:0{width}d}{FORMATS[image_format][1]}" if split == "train" else name
                archive.writestr(zipfile.ZipInfo(member, ZIP_TIME), blob)
                written += 1
        if not written:
            raise DataError(f"none of the {len(names)} files of the {split} split of {str(data)!r} could be read.")
        archive.comment = json.dumps({**comment, "files": written, "skipped": skipped}).encode()
    return Packed(written, skipped, out.stat().st_size)


def _reencode(blob: bytes | None, size: int, image_format: str, quality: int) -> bytes | None:
    image = None if blob is None else decode_image(blob, size)
    return None if image is None else encode(image, image_format, quality)


def check_output(out: Path, data: Path) -> None:
    """Refuse an ``out`` that is the data itself, a folder, unwritable, or an existing file no pack wrote."""
    if out.resolve() == data.resolve():
        raise ValueError(f"--out {str(out)!r} is the --data it would be packed from: choose another --out.")
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a directory: give a file path such as {str(out / 'faces64.zip')!r}.")
    why = why_unwritable(out.parent)
    if why:
        raise ValueError(f"cannot write --out {str(out)!r}: {why}. Choose another --out.")
    if out.exists() and pack_comment(out) is None:  # an earlier pack may be replaced, nothing else
        raise ValueError(f"will not overwrite {str(out)!r}: it exists and is not a zip sagan.pack wrote. Choose "
                         "another --out.")


def pack_comment(path: Path) -> dict | None:
    """What a zip sagan.pack wrote says it holds; None for any other file."""
    try:
        with zipfile.ZipFile(path) as archive:
            comment = json.loads(archive.comment or b"null")
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    return comment if isinstance(comment, dict) and comment.get("format") == PACK_FORMAT else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sagan.pack", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--data", required=True, help="folder or .zip of images, as train.py --data takes")
    a("--out", required=True, metavar="PATH.zip", help="the zip to write")
    a("--holdout", type=int, required=True, metavar="N", help="the last N files by name are the validation split "
      "(as train.py --holdout N): --split train leaves them out, --split holdout copies them (0: none)")
    a("--split", choices=("train", "holdout"), default="train", help="which split to write (default train)")
    a("--size", type=int, default=64, help="side of the re-encoded training faces in pixels (default 64)")
    a("--format", choices=tuple(FORMATS), default="webp", help="encoding of the training faces (default webp)")
    a("--quality", type=int, default=85, help="encoder quality, 1-100 (default 85)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = pack(args.data, args.out, args.holdout, args.size, args.format, args.quality, args.split)
    except (ValueError, OSError) as e:  # DataError, a bad option, a disk that filled up
        print(f"error: {e}", file=sys.stderr)
        return 2
    skipped = f" ({result.skipped} skipped: not readable as images)" if result.skipped else ""
    print(f"wrote the {args.split} split of {args.data}, {result.files:,} files{skipped}, to {args.out}: "
          f"{result.bytes / 2 ** 20:.1f} MiB ({result.bytes / result.files:,.0f} bytes a file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
