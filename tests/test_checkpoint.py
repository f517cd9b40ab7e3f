"""Checkpoint I/O (sagan/checkpoint.py): what is refused, with which message, and how exports are written."""
import json
import os
import pickle
import stat
import zipfile

import pytest
import torch

from sagan.checkpoint import CheckpointError, export_generator, load_generator, load_training_state
from sagan.networks import Generator
from tests.factories import tiny_model


def test_code_carrying_pickle_is_refused(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"version": 1, "x": Payload()}))
    with pytest.raises(CheckpointError, match="not a loadable") as refused:
        load_training_state(bad)
    assert "weights_only" not in str(refused.value)  # torch's own text suggests a load that would run the code
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_generator(bad)
    torch.save({"version": 1, "x": Payload()}, tmp_path / "saved.pt")  # the same payload as torch.save writes it
    with pytest.raises(CheckpointError, match="would import print: files that carry code are refused"):
        load_training_state(tmp_path / "saved.pt")
    assert "this must never run" not in capsys.readouterr().out


def test_a_training_checkpoint_given_as_exported_weights_says_how_to_export(tmp_path):
    torch.save({"version": 1}, tmp_path / "latest.pt")
    with pytest.raises(CheckpointError, match="is a training checkpoint.*train.py --out RUN_DIR --export"):
        load_generator(tmp_path / "latest.pt")
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as faces:  # a data set's zip is not called one
        faces.writestr("faces/0.png", b"not really a png")
    with pytest.raises(CheckpointError, match="'.*faces.zip' is not a safetensors file"):
        load_generator(tmp_path / "faces.zip")


def test_files_from_other_versions_or_tools_are_refused_by_name(tmp_path):
    torch.save({"version": 99, "step": 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="not a sagan-anime training checkpoint of version 1"):
        load_training_state(tmp_path / "future.pt")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="was not exported by sagan-anime"):
        load_generator(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="export dtype must be fp32 or fp16, not 'bf16'"):
        export_generator(Generator(tiny_model()), tmp_path / "g.safetensors", dtype="bf16")


def test_exports_are_readable_by_others_and_bad_targets_are_refused(tmp_path):
    g = Generator(tiny_model())
    umask = os.umask(0o022)
    try:
        export_generator(g, tmp_path / "g.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "g.safetensors").stat().st_mode) == 0o644  # an app may run as another user
    with pytest.raises(CheckpointError, match="it is a directory"):
        export_generator(g, tmp_path)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match="'.*file' is a file, not a folder. Choose another --export path"):
        export_generator(g, tmp_path / "file" / "g.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "g.safetensors"]  # no temporary file left


def test_weights_that_do_not_match_their_config_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    export_generator(Generator(tiny_model()), tmp_path / "g.safetensors")
    tensors = load_file(str(tmp_path / "g.safetensors"))
    wider = json.dumps({**json.loads(_metadata(tmp_path / "g.safetensors")["config"]), "conv_dim": 16})
    save_file(tensors, str(tmp_path / "bad.safetensors"),
              metadata={**_metadata(tmp_path / "g.safetensors"), "config": wider})
    with pytest.raises(CheckpointError, match="does not match"):
        load_generator(tmp_path / "bad.safetensors")


def _metadata(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()
