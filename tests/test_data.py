"""Data sets (sagan/data.py): folders and zips, bad and damaged files skipped and counted, the holdout split,
the decoded cache and its key, and batches."""
import io
import os
import shutil
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from sagan.data import DataError, batch_indices, cache_key, list_images, load_images, real_batch
from tests.factories import write_faces


def test_mixed_folder_keeps_the_good_images(tmp_path):
    folder = tmp_path / "mixed"
    write_faces(folder / "nested", count=3)
    Image.new("L", (20, 30), 128).save(folder / "gray.png")
    Image.new("RGBA", (24, 24), (255, 0, 0, 0)).save(folder / "transparent.png")
    Image.new("P", (16, 16), 3).save(folder / "palette.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    jpeg = (folder / "nested" / "0000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "huge.png").write_bytes(_png_claiming_size(100_000, 100_000))
    with pytest.warns(UserWarning, match="skipped 4 of 10"):
        images = load_images(folder, 16)
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.uint8
    names = sorted(["nested/0000.jpg", "nested/0001.jpg", "nested/0002.jpg", "gray.png", "transparent.png",
                    "palette.png"])
    by_name = dict(zip(names, images))
    assert (by_name["transparent.png"] == 255).all()  # transparency is laid on white
    gray = by_name["gray.png"]
    assert (gray == 128).all() and torch.equal(gray[0], gray[1])


def test_a_16_bit_grayscale_png_keeps_its_tones(tmp_path):
    """Pillow opens it as I;16, whose plain RGB conversion clips every value above 255 to white."""
    pixels = (np.arange(64).reshape(8, 8) * 1040).astype(np.uint16)  # 0 to 65520
    Image.fromarray(pixels).save(tmp_path / "gray16.png")
    with Image.open(tmp_path / "gray16.png") as img:
        assert img.mode == "I;16"
    (image,) = load_images(tmp_path, 8)
    expected = torch.from_numpy((pixels >> 8).astype(np.uint8))
    assert all(torch.equal(channel, expected) for channel in image)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header claims an enormous image: it must be refused before any decoding."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_centre_crop_then_resize(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, 10:30] = 255  # the central 20x20 square is white, the sides black
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    (image,) = load_images(tmp_path, 10)
    assert (image == 255).all()


def test_zip_data_set_matches_the_folder(tmp_path, faces_dir):
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(faces_dir.iterdir()):
            zf.write(path, f"faces/{path.name}")
    assert torch.equal(load_images(archive, 16), load_images(faces_dir, 16))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_damaged_zip_member_is_skipped_and_counted(tmp_path, faces_dir, compression):
    """A member whose bytes were damaged (a bad CRC-32, or a deflate stream that no longer inflates)
    is skipped like an undecodable image, not a crash that ends the run."""
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(faces_dir.iterdir()):
            zf.write(path, path.name)
        damaged = zf.getinfo("0003.jpg")
    raw = bytearray(archive.read_bytes())
    start = damaged.header_offset + 30 + len(damaged.filename) + len(damaged.extra)
    for i in range(start + 20, start + 60):  # inside the member's data, past any header it starts with
        raw[i] ^= 0x5A
    archive.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="skipped 1 of 12 .*0003.jpg"):
        images = load_images(archive, 16)
    expected = load_images(faces_dir, 16)
    assert torch.equal(images, torch.cat([expected[:3], expected[4:]]))


def test_a_copied_zip_keeps_its_cache_key_and_changed_contents_do_not(tmp_path, faces_dir):
    def archive(name, files):
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            for path in files:
                zf.write(path, f"faces/{path.name}")
        return tmp_path / name

    files = sorted(faces_dir.iterdir())
    original = archive("a.zip", files)
    key = cache_key(original, list_images(original), 16)
    copy = tmp_path / "elsewhere" / "copy.zip"
    copy.parent.mkdir()
    shutil.copy(original, copy)
    os.utime(copy, (0, 0))
    assert cache_key(copy, list_images(copy), 16) == key
    assert cache_key(original, list_images(original), 32) != key
    files[0].write_bytes(files[1].read_bytes())
    changed = archive("b.zip", files)
    assert cache_key(changed, list_images(changed), 16) != key


def test_no_usable_images_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_images(tmp_path / "empty", 16)
    with pytest.raises(DataError, match="does not exist"):
        load_images(tmp_path / "missing", 16)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="could be decoded"), pytest.warns(UserWarning):
        load_images(tmp_path / "bad", 16)


def test_holdout_is_the_last_files_by_name(faces_dir):
    everything = load_images(faces_dir, 16, split="all")
    train = load_images(faces_dir, 16, holdout=2)
    held = load_images(faces_dir, 16, holdout=2, split="holdout")
    assert torch.equal(torch.cat([train, held]), everything) and held.shape[0] == 2


def test_cache_gives_the_same_images_without_decoding_again(tmp_path, faces_dir, monkeypatch):
    first = load_images(faces_dir, 16, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_decoding(*args):
        raise AssertionError("a cached data set was decoded again")
    monkeypatch.setattr("sagan.data.decode_image", no_decoding)
    assert torch.equal(load_images(faces_dir, 16, cache_dir=tmp_path / "cache"), first)


def test_a_changed_file_in_a_folder_changes_its_cache_key(tmp_path):
    paths = write_faces(tmp_path / "faces", count=3)
    names = sorted(p.name for p in paths)
    before = cache_key(tmp_path / "faces", names, 16)
    write_faces(tmp_path / "faces", count=1, seed=9)  # rewrites 0000.jpg with other pixels
    assert cache_key(tmp_path / "faces", names, 16) != before


def test_batches_walk_each_epoch_once_and_repeat_from_the_seed():
    first_epoch = torch.cat([batch_indices(10, 5, seed=3, step=s) for s in range(2)])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert torch.equal(batch_indices(10, 4, 3, 7), batch_indices(10, 4, 3, 7))
    second_epoch = torch.cat([batch_indices(10, 5, seed=3, step=s) for s in (2, 3)])
    other_seed = torch.cat([batch_indices(10, 5, seed=4, step=s) for s in range(2)])
    assert not torch.equal(second_epoch, first_epoch) and not torch.equal(other_seed, first_epoch)
    # A batch across an epoch's end: the last two of epoch 0's order, then the first two of epoch 1's.
    assert torch.equal(batch_indices(10, 4, 3, 2), torch.cat([first_epoch[8:], second_epoch[:2]]))


def test_real_batch_scales_flips_and_shares_the_global_batch_between_ranks():
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    idx = batch_indices(10, 6, seed=1, step=2)
    batch = real_batch(images, idx, torch.Generator().manual_seed(5))
    assert batch.shape == (6, 3, 4, 4) and batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(batch, real_batch(images, idx, torch.Generator().manual_seed(5)))
    plain = images[idx].float() / 127.5 - 1
    flipped = [torch.equal(b, p.flip(2)) for b, p in zip(batch, plain)]
    assert all(f or torch.equal(b, p) for f, b, p in zip(flipped, batch, plain)) and any(flipped)
    shares = [real_batch(images, idx[r * 3:(r + 1) * 3], torch.Generator().manual_seed(5), r, 2) for r in (0, 1)]
    assert torch.equal(torch.cat(shares), batch)


def test_a_truncated_zip_is_named_as_such(tmp_path, faces_dir):
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(faces_dir.iterdir()):
            zf.write(path, path.name)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable zip archive \\(truncated or corrupt\\?\\)"):
        list_images(archive)


def test_a_password_protected_zip_is_refused_with_the_fix(tmp_path, faces_dir):
    """Python cannot read its members without the password: one clear error, not a crash on the first file."""
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(faces_dir.iterdir()):
            zf.write(path, path.name)
            zf.getinfo(path.name).flag_bits |= 0x1  # the central directory's encrypted flag, as zip -P sets it
        offsets = [info.header_offset for info in zf.infolist()]
    raw = bytearray(archive.read_bytes())
    for offset in offsets:  # the same flag in each local header (Python's zipfile cannot write encrypted zips)
        raw[offset + 6] |= 0x1
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="password-protected .*: extract it with its password and pass the folder"):
        load_images(archive, 16)
