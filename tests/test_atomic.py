"""Writing outputs (sagan/atomic.py): a file is replaced whole or not at all, also by two processes at once,
and a folder that cannot be written is found before any work."""
import multiprocessing

import numpy as np
import pytest

from sagan.atomic import atomic_write, why_unwritable
from tests.factories import make_read_only


def test_a_finished_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "new" / "stats.npz"  # its folder is made
    for text in ("first", "second"):
        with atomic_write(path) as tmp:
            tmp.write_text(text)
            assert not path.exists() or path.read_text() != text  # nothing is visible before the end
    assert path.read_text() == "second" and [p.name for p in path.parent.iterdir()] == ["stats.npz"]


def test_a_failed_write_leaves_the_old_file_as_it_was(tmp_path):
    path = tmp_path / "latest.pt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def _write_repeatedly(path, value, errors):
    try:
        for _ in range(40):
            with atomic_write(path) as tmp, open(tmp, "wb") as f:
                np.save(f, np.full(200_000, value))
    except OSError as e:
        errors.put(repr(e))


def test_two_processes_writing_one_file_both_succeed(tmp_path):
    """Two evaluations sharing a cache: with one temporary name for both, a quarter of the writes failed."""
    path = tmp_path / "reference.npy"
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    workers = [ctx.Process(target=_write_repeatedly, args=(path, value, errors)) for value in (1.0, 2.0)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert all(worker.exitcode == 0 for worker in workers) and errors.empty()
    values = np.load(path)
    assert values.shape == (200_000,) and values[0] in (1.0, 2.0) and (values == values[0]).all()


def test_why_unwritable_names_the_nearest_existing_file_or_read_only_folder(tmp_path, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    make_read_only(monkeypatch, read_only)
    assert why_unwritable(tmp_path / "new" / "deeper") is None  # made when written
    taken = tmp_path / "taken"
    assert why_unwritable(taken / "sub" / "deeper") == f"{str(taken)!r} is a file, not a folder"
    assert why_unwritable(read_only) == f"{str(read_only)!r} is a read-only folder"
    assert why_unwritable(read_only / "new") == f"{str(read_only)!r} is a read-only folder"
