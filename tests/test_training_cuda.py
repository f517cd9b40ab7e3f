"""The CUDA fast path: no host synchronisation inside the training loop, and bf16 runs that resume.

These run only where a CUDA GPU is present (the lent GPU machine); CPU runs skip them.
"""
import pytest
import torch

from sagan.checkpoint import load_training_state
from sagan.step import Iteration, build_models, make_autocast
from sagan.training import train
from tests.factories import assert_trained_alike, tiny_train_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("recipe", [{}, {"d_steps": 2, "bcr_weight": 10.0, "topk": 0.5}], ids=["plain", "recipe"])
def test_training_iterations_never_wait_for_the_gpu(recipe):
    device = torch.device("cuda")
    cfg = tiny_train_config("unused", "unused", device="cuda", precision="bf16", **recipe)
    models = build_models(cfg, device)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, device=device)
    policy, autocast = ("color", "translation", "cutout"), make_autocast(device, "bf16")
    iterate = Iteration(models, models.G, models.D, images, cfg, policy, autocast)
    iterate()  # warm-up: allocations, cuDNN plans
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call below raises
    try:
        losses = [torch.stack(iterate())
                  for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(torch.stack(losses)).all() and models.step == 4


def test_bf16_cuda_run_resumes_like_an_uninterrupted_one(tmp_path, faces_dir):
    # Eager steps (graphed runs, the default on one GPU, have their own resume test in test_graphs.py).
    kw = dict(device="cuda", precision="bf16", diffaugment="translation,cutout", cuda_graphs=False)
    straight = train(tiny_train_config(faces_dir, tmp_path / "a", steps=4, **kw), progress=False, tensorboard=False)
    train(tiny_train_config(faces_dir, tmp_path / "b", steps=2, **kw), progress=False, tensorboard=False)
    state = load_training_state(tmp_path / "b" / "checkpoints" / "latest.pt")
    resumed = train(tiny_train_config(faces_dir, tmp_path / "b", steps=4, **kw), resume_state=state,
                    progress=False, tensorboard=False)
    assert next(straight.G.parameters()).is_cuda and resumed.step == straight.step == 4
    assert_trained_alike(straight, resumed, atol=2e-3)
