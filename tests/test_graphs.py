"""CUDA graph training (sagan/graphs.py): when a run uses it, and that replays draw eager's random numbers
and train like eager steps.

All but the first run only where a CUDA GPU is present (the lent GPU machine); CPU runs skip them.
"""
import copy
import json
import warnings

import pytest
import torch

from sagan.augment import parse_policy
from sagan.checkpoint import load_training_state
from sagan.graphs import GraphedIteration, use_cuda_graphs
from sagan.step import Iteration, build_models, make_autocast, restore, training_state
from sagan.training import train
from tests.factories import assert_trained_alike, tiny_model, tiny_train_config

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_graphs_are_on_by_default_for_one_cuda_process_only_and_a_flag_decides_otherwise():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_cuda_graphs(None, cuda, 1)
    assert not use_cuda_graphs(None, cuda, 2) and not use_cuda_graphs(None, cpu, 1)
    assert not use_cuda_graphs(False, cuda, 1)
    assert use_cuda_graphs(True, cpu, 1)  # asked for: train() refuses it there with a message (test_train_cli)


@needs_cuda
def test_a_registered_generator_replays_the_numbers_of_its_new_seed():
    gen = torch.Generator("cuda")
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(gen)
    gen.manual_seed(1)
    torch.rand(8, generator=gen, device="cuda")  # warm-up outside the graph
    with torch.cuda.graph(graph):
        drawn = torch.randn(1000, generator=gen, device="cuda") + torch.rand(7, 1, generator=gen, device="cuda")
    for seed in (5, 123456789):
        gen.manual_seed(seed)
        graph.replay()
        eager = torch.Generator("cuda").manual_seed(seed)
        expected = torch.randn(1000, generator=eager, device="cuda") + torch.rand(7, 1, generator=eager, device="cuda")
        assert torch.equal(drawn, expected)


# Two D updates, bCR and a top-k count that falls between the captured step and the replayed one (4 of 4 fakes
# at step 3, 3 at step 5): the replay must draw each D update's own batch and keep the step's own k.
RECIPE = {"d_steps": 2, "bcr_weight": 10.0, "topk": 0.5, "topk_kimg": 0.001}


@needs_cuda
@pytest.mark.parametrize("recipe", [{}, RECIPE], ids=["plain", "recipe"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("attention", [{}, dict(conv_dim=16, attn_dnl=True, attn_cosine=True, attn_rel_pos=True,
                                                attn_heads=2, attn_gamma_init=0.5)], ids=["sagan", "options"])
def test_a_replayed_step_equals_an_eager_step_from_the_same_state(precision, recipe, attention):
    device = torch.device("cuda")
    cfg = tiny_train_config("", "unused", device="cuda", precision=precision, diffaugment="color,translation,cutout",
                            model=tiny_model(**attention), **recipe)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, device=device)

    def iteration(models):
        return Iteration(models, models.G, models.D, images, cfg, parse_policy(cfg.diffaugment),
                         make_autocast(device, precision, cache=False))

    graphed_models = build_models(cfg, device)
    graphed = GraphedIteration(iteration(graphed_models))
    for _ in range(graphed.warmup + 2):  # eager warm-up steps, the capture, a replay
        graphed()
    assert graphed.graph is not None and graphed_models.step == graphed.warmup + 2
    eager_models = build_models(cfg, device)
    # A copy: restoring shares the optimizer's state tensors with their source (same device and dtype).
    restore(eager_models, copy.deepcopy(training_state(graphed_models, cfg)))
    before = [p.detach().clone() for p in graphed_models.D.parameters()]
    graph_losses, eager_losses = torch.stack(graphed()), torch.stack(iteration(eager_models)())
    assert graphed_models.step == eager_models.step
    assert any(not torch.equal(a, b) for a, b in zip(before, graphed_models.D.parameters()))  # the replay trained
    torch.testing.assert_close(graph_losses, eager_losses, rtol=0, atol=1e-4)
    # One Adam step moves a weight by up to the learning rate (1e-4 for G, 4e-4 for D): a replay
    # with another step's batch, latents or augmentation would miss by that much, not by 2e-5.
    for name in ("G", "D", "G_ema"):
        a, b = getattr(graphed_models, name).state_dict(), getattr(eager_models, name).state_dict()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-5, msg=f"{name}.{k}")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graphed_training_matches_eager_training(tmp_path, faces_dir, precision):
    kw = dict(device="cuda", precision=precision, diffaugment="color,translation,cutout", steps=8, log_every=4,
              ckpt_every=4)
    eager = train(tiny_train_config(faces_dir, tmp_path / "eager", cuda_graphs=False, **kw), progress=False,
                  tensorboard=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed = train(tiny_train_config(faces_dir, tmp_path / "graphed", cuda_graphs=True, **kw),
                        progress=False, tensorboard=False)
    # Neither a failed capture nor Adam's warning that a capturable instance runs eagerly.
    assert not [w for w in caught if "CUDA graph capture failed" in str(w.message) or "capturable" in str(w.message)]
    assert graphed.step == eager.step == 8  # 3 eager warm-up steps, a capture, then replays
    # Eight steps of GPU non-determinism, not a step's worth of exactness: the test above holds that.
    assert_trained_alike(eager, graphed, atol=5e-3)
    losses = [[(e["step"], e["loss/d"], e["loss/g"]) for e in map(json.loads, (tmp_path / run / "log.jsonl").open())
               if "loss/d" in e] for run in ("eager", "graphed")]
    assert [s for s, _, _ in losses[1]] == [s for s, _, _ in losses[0]] == [4, 8]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=0, atol=2e-2)


@needs_cuda
def test_compiled_graphed_training_matches_eager_training(tmp_path, faces_dir):
    """What bench/gpu_session.sh asks before it trains with --compile: compiled networks replayed as CUDA graphs
    train as eager ones do, with the recipe options on."""
    kw = dict(device="cuda", precision="bf16", diffaugment="translation,cutout", steps=8, log_every=4, ckpt_every=4,
              **RECIPE)
    eager = train(tiny_train_config(faces_dir, tmp_path / "eager", cuda_graphs=False, **kw), progress=False,
                  tensorboard=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = train(tiny_train_config(faces_dir, tmp_path / "compiled", cuda_graphs=True, compile=True, **kw),
                         progress=False, tensorboard=False)
    assert not [w for w in caught if "CUDA graph capture failed" in str(w.message)]
    assert compiled.step == eager.step == 8
    assert_trained_alike(eager, compiled, atol=5e-3)


@needs_cuda
def test_graphed_run_resumes_like_an_uninterrupted_one(tmp_path, faces_dir):
    kw = dict(device="cuda", precision="bf16", diffaugment="translation,cutout", cuda_graphs=True, ckpt_every=4)
    straight = train(tiny_train_config(faces_dir, tmp_path / "a", steps=10, **kw), progress=False, tensorboard=False)
    train(tiny_train_config(faces_dir, tmp_path / "b", steps=5, **kw), progress=False, tensorboard=False)
    state = load_training_state(tmp_path / "b" / "checkpoints" / "latest.pt")
    resumed = train(tiny_train_config(faces_dir, tmp_path / "b", steps=10, **kw), resume_state=state,
                    progress=False, tensorboard=False)
    assert resumed.step == straight.step == 10
    assert_trained_alike(straight, resumed, atol=5e-3)


@needs_cuda
def test_a_failed_capture_warns_and_trains_on_eagerly(tmp_path, faces_dir, monkeypatch):
    kw = dict(device="cuda", precision="bf16", diffaugment="translation", steps=6, log_every=3, ckpt_every=3)
    eager = train(tiny_train_config(faces_dir, tmp_path / "eager", cuda_graphs=False, **kw), progress=False,
                  tensorboard=False)

    def refuse(self, generator):
        raise RuntimeError("no generator registration here")
    monkeypatch.setattr(torch.cuda.CUDAGraph, "register_generator_state", refuse)
    with pytest.warns(UserWarning, match="CUDA graph capture failed .*no generator registration here"):
        fallback = train(tiny_train_config(faces_dir, tmp_path / "fallback", cuda_graphs=True, **kw),
                         progress=False, tensorboard=False)
    assert fallback.step == eager.step == 6
    assert all(g["capturable"] is False for opt in (fallback.opt_g, fallback.opt_d) for g in opt.param_groups)
    assert_trained_alike(eager, fallback, atol=5e-3)
