"""Checkpoint I/O (sagan/checkpoint.py): what is refused, with which message, and how exports are written."""
import dataclasses
import json
import os
import pickle
import stat
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

from sagan.checkpoint import EXPORT_FORMAT, CheckpointError, export_generator, load_generator, load_training_state
from sagan.networks import Generator
from sagan.sampling import latents
from sagan.standing import STANDING_BATCH_SIZE, STANDING_BATCHES, standing_statistics
from tests.factories import generator_with_copied_statistics, tiny_model

ROOT = Path(__file__).resolve().parents[1]


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
    from safetensors.torch import save_file
    export_generator(Generator(tiny_model()), tmp_path / "g.safetensors")
    tensors = load_file(str(tmp_path / "g.safetensors"))
    wider = json.dumps({**json.loads(_metadata(tmp_path / "g.safetensors")["config"]), "conv_dim": 16})
    save_file(tensors, str(tmp_path / "bad.safetensors"),
              metadata={**_metadata(tmp_path / "g.safetensors"), "config": wider})
    with pytest.raises(CheckpointError, match="does not match"):
        load_generator(tmp_path / "bad.safetensors")


def test_exports_carry_standing_statistics_say_so_and_repeat(tmp_path):
    g = generator_with_copied_statistics()
    for name in ("a", "b"):
        export_generator(g, tmp_path / f"{name}.safetensors", step=7)
    # The same tensors, byte for byte, and the same metadata (safetensors writes its metadata map in hash order,
    # so the two headers may list the entries in another order).
    a, b = (load_file(str(tmp_path / f"{name}.safetensors")) for name in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metadata = _metadata(tmp_path / "a.safetensors")
    assert _metadata(tmp_path / "b.safetensors") == metadata
    assert metadata["standing_stats_batches"] == str(STANDING_BATCHES)
    assert metadata["standing_stats_batch_size"] == str(STANDING_BATCH_SIZE)
    loaded = load_generator(tmp_path / "a.safetensors").state_dict()
    expected = standing_statistics(g).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert not torch.equal(loaded["blocks.0.1.running_var"], g.state_dict()["blocks.0.1.running_var"])
    # 0 batches: the statistics as they were, and the metadata says none were measured.
    export_generator(g, tmp_path / "copied.safetensors", standing_batches=0)
    assert _metadata(tmp_path / "copied.safetensors")["standing_stats_batches"] == "0"
    kept = load_generator(tmp_path / "copied.safetensors").state_dict()
    assert all(torch.equal(kept[k], v) for k, v in g.state_dict().items())


def test_exports_from_before_standing_statistics_load_and_draw_as_they_did(tmp_path):
    """A file written as export_generator wrote them before, without the standing_stats entry: loading measures
    nothing, so every seed draws the face it drew."""
    g = generator_with_copied_statistics()
    tensors = {k: v.contiguous() for k, v in g.state_dict().items()}
    metadata = {"format": EXPORT_FORMAT, "config": json.dumps(dataclasses.asdict(g.cfg)), "step": "5"}
    (tmp_path / "old.safetensors").write_bytes(save(tensors, metadata=metadata))
    loaded = load_generator(tmp_path / "old.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tensors.items())
    z = latents(range(4), g.cfg.z_dim)
    with torch.no_grad():
        assert torch.equal(loaded(z), g(z))
    # Loading never re-measures BatchNorm statistics: the bundled generator keeps the buffers its file holds.
    bundled = ROOT / "checkpoints" / "anime64.safetensors"
    stored, state = load_file(str(bundled)), load_generator(bundled).state_dict()
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in stored.items())


def _metadata(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()
