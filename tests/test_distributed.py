"""Two processes with the gloo backend on the CPU, as torchrun would start them."""
import json
import os
import signal
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sagan import training
from sagan.checkpoint import load_training_state
from sagan.distributed import collective_timeout, init_distributed
from sagan.step import Iteration, build_models
from sagan.training import TrainingError, train
from tests.factories import tiny_train_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_rank(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def _rank_main(rank, world, port, data, out, weights_dir, recipe=None):
    _as_rank(rank, world, port)
    models = train(tiny_train_config(data, out, steps=3, batch_size=2, **(recipe or {})), progress=False,
                   tensorboard=False)
    torch.save({name: getattr(models, name).state_dict() for name in ("G", "D", "G_ema")},
               os.path.join(weights_dir, f"rank{rank}.pt"))


def test_two_processes_stay_in_step_and_their_checkpoint_resumes(tmp_path, faces_dir):
    out = tmp_path / "run"
    mp.spawn(_rank_main, args=(2, _free_port(), str(faces_dir), str(out), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in ("G", "D", "G_ema"):
        for key, value in rank0[name].items():
            assert torch.equal(value, rank1[name][key]), f"{name}.{key} differs between ranks"
    initial = build_models(tiny_train_config(faces_dir, out, steps=3, batch_size=2), torch.device("cpu")).G
    assert not torch.equal(rank0["G"]["to_rgb.0.weight"], initial.state_dict()["to_rgb.0.weight"])  # it trained

    # Only rank 0 wrote the run directory; its checkpoint holds rank 0's weights and resumes in one process.
    state = load_training_state(out / "checkpoints" / "latest.pt")
    assert state["step"] == 3
    assert all(torch.equal(state["G"][k], v) for k, v in rank0["G"].items())
    resumed = train(tiny_train_config(faces_dir, out, steps=4, batch_size=2), resume_state=state,
                    progress=False, tensorboard=False)
    assert resumed.step == 4


class _StoppedAtStep2:
    """An Iteration that gets SIGTERM, as torchrun or a scheduler sends it, once step 2 is done."""

    def __init__(self, *args, **kwargs):
        self.iterate = Iteration(*args, **kwargs)

    def __call__(self):
        losses = self.iterate()
        if self.iterate.models.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return losses


def _end_three_ways(rank, world, ports, data, tmp):
    """Train to the end, into an error both ranks raise, and into a stop signal, each in a group of its
    own; record what each ended with and whether its group was still there afterwards."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as train.py sets it
    ended = {}
    for (path, overrides), port in zip((("success", {}), ("error", {"sync_bn": True}), ("signal", {})), ports):
        _as_rank(rank, world, port)
        if path == "signal":
            training.Iteration = _StoppedAtStep2
        cfg = tiny_train_config(data, os.path.join(tmp, path), steps=4, batch_size=2, **overrides)
        try:
            train(cfg, progress=False, tensorboard=False)
            outcome = "returned"
        except (TrainingError, KeyboardInterrupt) as e:
            outcome = type(e).__name__
        ended[path] = (outcome, dist.is_initialized())
        if dist.is_initialized():  # so the next path can start its own group
            dist.destroy_process_group()
    with open(os.path.join(tmp, f"ended{rank}.json"), "w") as f:
        json.dump(ended, f)


def test_every_way_a_run_ends_destroys_its_process_group(tmp_path, faces_dir):
    """A group left to interpreter shutdown can abort a finished run (SIGABRT from gloo's threads)."""
    mp.spawn(_end_three_ways, args=(2, [_free_port() for _ in range(3)], str(faces_dir), str(tmp_path)),
             nprocs=2, join=True)
    for rank in (0, 1):
        ended = json.loads((tmp_path / f"ended{rank}.json").read_text())
        assert ended == {"success": ["returned", False], "error": ["TrainingError", False],
                         "signal": ["KeyboardInterrupt", False]}, f"rank {rank}"


def test_with_two_d_steps_bcr_and_top_k_the_ranks_stay_in_step(tmp_path, faces_dir):
    recipe = dict(d_steps=2, bcr_weight=10.0, topk=0.5, topk_kimg=0.001, diffaugment="translation")
    mp.spawn(_rank_main, args=(2, _free_port(), str(faces_dir), str(tmp_path / "run"), str(tmp_path), recipe),
             nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in ("G", "D", "G_ema"):
        for key, value in rank0[name].items():
            assert torch.equal(value, rank1[name][key]), f"{name}.{key} differs between ranks"
    state = load_training_state(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["opt_d"]["state"][0]["step"].item() == 6  # two D updates in each of 3 steps


def test_cpu_ranks_wait_for_rank_0s_validation_however_long_it_takes(monkeypatch):
    """On CPUs rank 0's validation (Inception at a few images per second) can outlast gloo's default
    30-minute timeout; the other ranks must not give up on it. NCCL keeps its default."""
    assert collective_timeout(0) == timedelta(minutes=30)
    assert collective_timeout(52_000) >= timedelta(seconds=52_000 / 5)  # validation at the fastest CPU speed seen
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kwargs: calls.append((backend, kwargs)))
    monkeypatch.setattr(dist, "barrier", lambda **kwargs: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    ranks, device = init_distributed(torch.device("cpu"), collective_timeout(52_000))
    assert (ranks.rank, ranks.world, device.type) == (1, 2, "cpu")
    (backend, kwargs), = calls
    assert backend == "gloo" and kwargs["timeout"] == collective_timeout(52_000)
