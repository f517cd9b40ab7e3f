"""The run directory (sagan/rundir.py): config, log and checkpoints as a run leaves them."""
import json

import pytest
import torch
from PIL import Image

from sagan.rundir import RunDirectory, RunLock
from sagan.training import TrainingError
from tests.factories import tiny_train_config, train_tiny


def _state(step):
    return {"version": 1, "step": step, "weights": torch.full((3,), float(step))}


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("keep, kept", [(2, ["step-0000002.pt", "step-0000003.pt"]),
                                        (0, ["step-0000001.pt", "step-0000002.pt", "step-0000003.pt"])])
def test_periodic_checkpoints_keep_the_newest_and_latest_is_the_last(tmp_path, keep, kept):
    run = RunDirectory(tiny_train_config("data", tmp_path / "run", keep_ckpts=keep), tensorboard=False)
    for step in (1, 2, 3):
        run.save_checkpoint(_state(step), periodic=True)
    run.save_checkpoint(_state(4), periodic=False)  # the end of a run between periodic steps
    ckpts = tmp_path / "run" / "checkpoints"
    assert _names(ckpts) == sorted(kept + ["latest.pt"])
    assert torch.load(ckpts / "latest.pt", weights_only=True)["step"] == 4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["keep_ckpts"] == keep


def test_latest_is_written_in_full_where_hard_links_fail(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError("hard links not supported")
    monkeypatch.setattr("sagan.rundir.os.link", no_links)
    run = RunDirectory(tiny_train_config("data", tmp_path / "run"), tensorboard=False)
    run.save_checkpoint(_state(5), periodic=True)
    ckpts = tmp_path / "run" / "checkpoints"
    assert _names(ckpts) == ["latest.pt", "step-0000005.pt"]
    assert torch.equal(torch.load(ckpts / "latest.pt", weights_only=True)["weights"], torch.full((3,), 5.0))


def test_opening_removes_what_a_run_killed_mid_write_left(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / ".latest.pt.tmp123").write_bytes(b"half a checkpoint")
    (ckpts / "step-0000002.pt").write_bytes(b"a finished one")
    RunDirectory(tiny_train_config("data", tmp_path / "run"), tensorboard=False)
    assert _names(ckpts) == ["step-0000002.pt"]


def test_a_rolled_back_run_keeps_its_rollback_point(tmp_path):
    """Resumed from step 10 with steps 11 and 12 of the abandoned branch on disk, the retention of the
    last two periodic checkpoints counts the run's own: step 10 stays until the run passes it."""
    run = RunDirectory(tiny_train_config("data", tmp_path / "run", keep_ckpts=2), tensorboard=False)
    for step in (10, 11, 12):
        run.save_checkpoint(_state(step), periodic=True)
    ckpts = tmp_path / "run" / "checkpoints"
    assert _names(ckpts) == ["latest.pt", "step-0000011.pt", "step-0000012.pt"]
    (ckpts / "step-0000010.pt").write_bytes((ckpts / "step-0000011.pt").read_bytes())  # as it was at step 10
    run.save_checkpoint(_state(11), periodic=True)  # the new branch, from step 10
    assert _names(ckpts) == ["latest.pt", "step-0000010.pt", "step-0000011.pt", "step-0000012.pt"]
    run.save_checkpoint(_state(12), periodic=True)
    assert _names(ckpts) == ["latest.pt", "step-0000011.pt", "step-0000012.pt"]
    assert torch.load(ckpts / "step-0000012.pt", weights_only=True)["weights"][0] == 12


def test_one_run_directory_takes_one_training_at_a_time(tmp_path, faces_dir):
    with RunLock(tmp_path / "run") as held:
        assert held.acquire()
        with RunLock(tmp_path / "run") as second:
            assert not second.acquire()
        with pytest.raises(TrainingError, match="another training is writing to --out"):
            train_tiny(faces_dir, tmp_path / "run")
        assert not (tmp_path / "run" / "checkpoints").exists()
    assert train_tiny(faces_dir, tmp_path / "run").step == 3  # released



@pytest.mark.parametrize("count, columns", [(4, 2), (5, 3), (8, 3), (64, 8)])
def test_sample_grids_are_laid_out_like_the_apps_grid(tmp_path, count, columns):
    run = RunDirectory(tiny_train_config("data", tmp_path / "run"), tensorboard=False)
    path = run.save_grid(7, torch.zeros(count, 3, 8, 8))
    assert Image.open(path).width == columns * (8 + 2) + 2  # torchvision's padding of 2 around each face
