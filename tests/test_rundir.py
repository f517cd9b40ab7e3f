"""The run directory (sagan/rundir.py): config, log and checkpoints as a run leaves them."""
import json

import pytest
import torch

from sagan.rundir import RunDirectory
from tests.factories import tiny_train_config


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
