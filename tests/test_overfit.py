"""r_t of a run's discriminator on training and held-out faces (sagan/overfit.py)."""
import json

import pytest
import torch

from sagan import overfit
from sagan.checkpoint import CheckpointError, load_training_state
from sagan.config import TrainConfig
from sagan.data import load_images
from sagan.networks import Discriminator
from tests.factories import train_tiny


def test_r_t_scores_training_and_held_out_faces_with_the_checkpoints_discriminator(tmp_path, faces_dir, monkeypatch):
    train_tiny(faces_dir, tmp_path / "run", steps=2, holdout=4)
    scored = []
    logits = overfit.discriminator_logits
    monkeypatch.setattr(overfit, "discriminator_logits", lambda d, images: scored.append(images) or logits(d, images))
    result = overfit.measure(tmp_path / "run", num_faces=5)
    train, heldout = scored
    assert (train.shape[0], heldout.shape[0]) == (5, 4)  # 8 training faces, 4 held out: all of them
    held = load_images(faces_dir, 32, holdout=4, split="holdout")
    assert sorted(map(bytes, heldout.flatten(1).numpy())) == sorted(map(bytes, held.flatten(1).numpy()))
    state = load_training_state(tmp_path / "run" / "checkpoints" / "latest.pt")
    d = Discriminator(TrainConfig.from_dict(state["config"]).model)
    d.load_state_dict(state["D"])
    with torch.no_grad():
        on_train, on_heldout = (d.eval()(x.float() / 127.5 - 1) for x in (train, held))
    assert result["rt_heldout"] == pytest.approx(float(on_heldout.sign().mean()))
    assert result["logit_gap"] == pytest.approx(float(on_train.mean() - on_heldout.mean()), abs=1e-6)
    assert result["step"] == 2 and result["num_train"] == 5 and result["num_heldout"] == 4


def test_r_t_needs_a_run_with_held_out_faces(tmp_path, faces_dir):
    train_tiny(faces_dir, tmp_path / "run", steps=2)
    with pytest.raises(CheckpointError, match="trained on every face .no --holdout."):
        overfit.measure(tmp_path / "run")


def test_the_cli_prints_one_json_line_or_one_error_line(tmp_path, faces_dir, capsys):
    train_tiny(faces_dir, tmp_path / "run", steps=2, holdout=3)
    assert overfit.main(["--run", str(tmp_path / "run"), "--num-faces", "3", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {"rt_train", "rt_heldout", "rt_gap"} and printed["num_heldout"] == 3
    assert overfit.main(["--run", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("error: no checkpoint at ")
