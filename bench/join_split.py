"""Join a packed training split and its validation split into one zip whose last N names are the validation faces,
so train.py --holdout N, sagan.evaluate --holdout N and sagan.overfit see the same split they see in the original.

    python bench/join_split.py TRAIN.zip VALIDATION.zip OUT.zip     # prints N

``python -m sagan.pack`` writes the two (the training split re-encoded at 64 px, the validation split copied byte
for byte); the GPU session carries them and joins them on the device. Members are copied as they are, the
validation ones under ``~validation/``, a prefix that sorts after every name pack writes (digits) and every
ASCII letter, so they are the last by name.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sagan.data import list_images  # noqa: E402

PREFIX = "~validation/"


def join(train: str, validation: str, out: str) -> int:
    """Write ``out``; returns the number of validation faces (the --holdout that selects them)."""
    train_names, validation_names = list_images(train), list_images(validation)
    if any(name >= PREFIX for name in train_names):
        raise ValueError(f"{train!r} has names that sort after {PREFIX!r}: they would fall into the validation split.")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as joined:
        for source, names, prefix in ((train, train_names, ""), (validation, validation_names, PREFIX)):
            with zipfile.ZipFile(source) as z:
                for name in names:
                    joined.writestr(prefix + name, z.read(name))
    return len(validation_names)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python bench/join_split.py TRAIN.zip VALIDATION.zip OUT.zip")
    print(join(*sys.argv[1:]))
