"""Shared fixtures: a tiny exported generator, and the app serving it in a subprocess."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sagan.checkpoint import export_generator
from sagan.config import ModelConfig
from sagan.networks import Generator
from tests.factories import write_faces

ROOT = Path(__file__).resolve().parents[1]
TINY_GAMMAS = (0.5, 1.5)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 32x32 generator with the SAGAN block (the bundled generator's) at 8x8 and 16x16, exported like
    train.py exports one.

    Fresh attention gammas are 0 and fresh attention is nearly uniform; nonzero gammas and
    amplified features (BatchNorm scale) make the maps depend on the face and the query.
    """
    with torch.random.fork_rng():  # leave the global stream as other tests expect it
        torch.manual_seed(0)
        g = Generator(ModelConfig(image_size=32, z_dim=16, conv_dim=16, g_attn=(8, 16), d_attn=(8,), attn_pool=True,
                                  attn_whiten=False, attn_cosine=False))
    for gamma, attn in zip(TINY_GAMMAS, g.attn.values()):
        attn.gamma.data.fill_(gamma)
    for block in g.blocks:
        block[1].weight.data.mul_(6.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    # Its BatchNorm statistics as set, not re-measured: they keep the amplified features' maps query-dependent.
    export_generator(g.eval(), path, standing_batches=0)
    return path


@contextlib.contextmanager
def serve_app(log: Path, args: tuple = (), **env):
    """``python app.py ARGS`` on a free loopback port, with ``env`` added to its environment: its URL
    once it answers; stopped after."""
    # Started and stopped as the load test does; imported here, since machines without the app's
    # dependencies (the lent GPU machines) still run the other tests.
    sys.path.insert(0, str(ROOT / "bench"))
    from load_app import free_port, stop_app, wait_until_up
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False",
               # The suite shares two cores: one intra-op thread avoids oversubscription stalls.
               OMP_NUM_THREADS="1", **env)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_until_up(proc, url, time.monotonic() + 120)
        except (RuntimeError, TimeoutError) as e:
            pytest.fail(f"{e}:\n{log.read_text()}")
        yield url
    finally:
        stop_app(proc)


@pytest.fixture(scope="session")
def app_server(tiny_checkpoint, tmp_path_factory):
    """(URL, log file) of ``python app.py`` serving the tiny checkpoint, address and checkpoint given by
    env vars."""
    log = tmp_path_factory.mktemp("server") / "app.log"
    with serve_app(log, SAGAN_CHECKPOINT=str(tiny_checkpoint)) as url:
        yield url, log


@pytest.fixture(scope="session")
def app_url(app_server):
    return app_server[0]


@pytest.fixture
def faces_dir(tmp_path) -> Path:
    """A folder of twelve random-colour JPEGs standing in for a data set."""
    folder = tmp_path / "faces"
    write_faces(folder)
    return folder
