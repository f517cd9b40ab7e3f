"""Packing a data set (sagan/pack.py): what goes in, under which names and sizes, what stays out, and that
training reads the result and validates against the copied validation faces."""
import json
import zipfile

import numpy as np
import pytest
import torch

from sagan.data import list_images, load_images
from sagan.pack import PACK_FORMAT, main, pack
from sagan.training import train
from tests.factories import tiny_train_config, write_faces


@pytest.fixture
def faces(tmp_path):
    write_faces(tmp_path / "faces", count=12, size=40)
    return tmp_path / "faces"


def test_the_training_split_is_packed_in_order_at_its_size_and_the_holdout_stays_out(faces, tmp_path, capsys):
    assert main(["--data", str(faces), "--out", str(tmp_path / "train.zip"), "--holdout", "4", "--size", "32",
                 "--quality", "95"]) == 0
    assert "8 files" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "train.zip") as archive:
        names = archive.namelist()
        comment = json.loads(archive.comment)
    assert names == [f"{i:06d}.webp" for i in range(8)]
    assert comment == {"format": PACK_FORMAT, "source": "faces", "split": "train", "holdout": 4, "size": 32,
                       "image_format": "webp", "quality": 95, "files": 8, "skipped": 0}
    packed = load_images(tmp_path / "train.zip", 32)
    original = load_images(faces, 32, holdout=4, split="train")
    assert packed.shape == original.shape == (8, 3, 32, 32)
    # Each packed face is its own original, lossy: far closer to it than to any other face.
    distance = (packed[:, None].float() - original[None].float()).abs().mean(dim=(2, 3, 4))
    assert torch.equal(distance.argmin(dim=1), torch.arange(8))
    assert distance.diagonal().max() < 12
    # The same input packs to the same bytes.
    pack(faces, tmp_path / "again.zip", holdout=4, size=32, quality=95)
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "train.zip").read_bytes()


def test_the_holdout_split_is_copied_byte_for_byte(faces, tmp_path):
    result = pack(faces, tmp_path / "validation.zip", holdout=4, split="holdout")
    assert result.files == 4 and result.skipped == 0
    with zipfile.ZipFile(tmp_path / "validation.zip") as archive:
        assert archive.namelist() == ["0008.jpg", "0009.jpg", "0010.jpg", "0011.jpg"]
        assert all(archive.read(n) == (faces / n).read_bytes() for n in archive.namelist())


def test_jpeg_and_unreadable_files_and_refusals(faces, tmp_path):
    (faces / "0005.jpg").write_bytes(b"not a jpeg")
    result = pack(faces, tmp_path / "train.zip", holdout=2, size=16, image_format="jpeg", quality=80)
    assert result.files == 9 and result.skipped == 1
    assert list_images(tmp_path / "train.zip") == [f"{i:06d}.jpg" for i in range(9)]
    (tmp_path / "notes.zip").write_bytes(b"precious")
    for kwargs, message in ((dict(out=tmp_path / "notes.zip"), "will not overwrite .*notes.zip"),
                            (dict(out=faces), "is the --data it would be packed from"),
                            (dict(out=tmp_path / "x.zip", holdout=12), "--holdout 12 must be between 0"),
                            (dict(out=tmp_path / "x.zip", split="holdout", holdout=0), "a FID needs at least 2"),
                            (dict(out=tmp_path / "x.zip", quality=0), "--quality must be from 1 to 100")):
        with pytest.raises(ValueError, match=message):
            pack(faces, **{"holdout": 2, **kwargs})
    assert (tmp_path / "notes.zip").read_bytes() == b"precious"
    assert not (tmp_path / "x.zip").exists()


def test_training_reads_the_pack_and_validates_on_the_copied_holdout(faces, tmp_path):
    pack(faces, tmp_path / "train.zip", holdout=4, size=32)
    pack(faces, tmp_path / "validation.zip", holdout=4, split="holdout")
    references = []

    def extract(images):  # records what validation measures against: the reference comes first
        references.append(images.clone())
        x = images.float().mean(dim=(2, 3))
        return torch.cat([x, x.square() / 255], dim=1)
    out = tmp_path / "run"
    train(tiny_train_config(tmp_path / "train.zip", out, steps=2, eval_every=2, eval_samples=4, ckpt_every=2,
                            eval_data=str(tmp_path / "validation.zip"), inception_sha256="tiny"),
          progress=False, tensorboard=False, extractor=extract)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["images"] == 8.0  # the whole packed training split, nothing held out of it
    assert torch.equal(references[0], load_images(faces, 32, holdout=4, split="holdout"))
    entry = json.loads((out / "metrics.jsonl").read_text())
    assert entry["reference"] == str(tmp_path / "validation.zip") and entry["num_reference"] == 4
    assert np.isfinite(entry["fid"])
