"""The generator the app ships (checkpoints/anime64.safetensors), loaded as the Space loads it: its
metadata, seed 0's face and attention maps, and that face drawn alike by a fresh load and another
process. Every other test uses a tiny generator of its own, so a change in the config or state format
that this file no longer fits would otherwise pass them all while the Space fails to start."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import app
from sagan import explore
from sagan.checkpoint import EXPORT_FORMAT, read_export_metadata

from conftest import ROOT

OFF = explore.TRUNCATION_OFF


@pytest.fixture(scope="module")
def explorer():
    return app.load_explorer(app.DEFAULT_CHECKPOINT)


def test_its_metadata_says_what_the_readme_says(explorer):
    metadata = read_export_metadata(app.DEFAULT_CHECKPOINT)
    assert metadata["format"] == EXPORT_FORMAT and int(metadata["step"]) == 33800
    # Its BatchNorm statistics are standing ones (python -m sagan.standing, 40 batches of 256).
    assert (metadata["standing_stats_batches"], metadata["standing_stats_batch_size"]) == ("40", "256")
    config = json.loads(metadata["config"])
    assert (config["image_size"], tuple(config["g_attn"]), config["attn_pool"]) == (64, (16, 32), True)
    assert explorer.g.cfg.image_size == explorer.image_size == 64 and not explorer.g.training


def test_seed_0_is_a_face_with_one_attention_map_per_layer(explorer):
    render = explorer.face(0, OFF)
    assert render.face.shape == (64, 64, 3) and render.face.dtype == np.uint8
    assert render.face.std() > 20  # an image, not a flat or collapsed output
    assert [(m.resolution, m.key_grid) for m in render.attn_maps] == [(16, (8, 8)), (32, (16, 16))]  # pooled keys
    for m in render.attn_maps:
        assert m.weights.shape == (m.resolution ** 2, m.key_grid[0] * m.key_grid[1])
        assert torch.isfinite(m.weights).all() and (m.weights >= 0).all()
        torch.testing.assert_close(m.weights.sum(1), torch.ones(m.resolution ** 2))
        assert not torch.allclose(m.weights[0], m.weights[-1])  # where it looks depends on the query
    layers = explorer.attention(0, OFF, 32, 32)
    assert [caption.split(" ·")[0] for _, caption in layers] == ["16x16, keys 8x8", "32x32, keys 16x16"]
    # Three views per layer, side by side: where the pixel looks, its contrast to the mean, the mean.
    strip = (explore.MAP_SIZE, 3 * explore.MAP_SIZE + 2 * explore.STRIP_GAP, 3)
    assert all(views.shape == strip for views, _ in layers)


def test_seed_0_is_the_same_face_from_a_fresh_load_and_from_another_process(explorer, tmp_path):
    # With as many threads: 1 and 2 intra-op threads drew one pixel of this face a level apart.
    first, again = explorer.face(0, OFF), app.load_explorer(app.DEFAULT_CHECKPOINT).face(0, OFF)
    np.testing.assert_array_equal(again.face, first.face)
    for a, b in zip(first.attn_maps, again.attn_maps):
        assert torch.equal(a.weights, b.weights)
    done = subprocess.run([sys.executable, "-m", "sagan.sample", "--checkpoint", app.DEFAULT_CHECKPOINT, "--seeds",
                           "0", "--outdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads())))
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "seed0000.png") as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), first.face)
