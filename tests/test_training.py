"""The training step and loop (sagan/training.py): what one iteration does, EMA, logging, resuming,
validation, and the refusals that keep a run from being overwritten."""
import contextlib
import copy
import json
import math
import time

import pytest
import torch

from sagan.augment import parse_policy
from sagan.checkpoint import export_generator, export_run, load_generator, load_training_state
from sagan.config import TrainConfig
from sagan.data import batch_indices, load_images
from sagan.distributed import Distributed
from sagan.graphs import set_capturable
from sagan.losses import d_hinge_loss
from sagan.networks import Generator
from sagan.training import (Iteration, StepInputs, TrainingError, build_models, cuda_speed_settings, ema_decay,
                            make_autocast, restore, train, train_step, training_state)
from tests.factories import tiny_train_config, train_tiny

CPU = torch.device("cpu")


def test_one_step_gives_finite_losses_and_changes_weights(faces_dir):
    cfg = tiny_train_config(faces_dir, "unused")
    models = build_models(cfg, torch.device("cpu"))
    before_g = [p.detach().clone() for p in models.G.parameters()]
    before_d = [p.detach().clone() for p in models.D.parameters()]
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    iterate = Iteration(models, models.G, models.D, images, cfg, (), make_autocast(torch.device("cpu"), "fp32"))
    d_loss, g_loss = iterate()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss) and models.step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before_g, models.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, models.D.parameters()))
    assert all(p.requires_grad for p in models.D.parameters())  # G's step switches D's grads back on


def test_a_discriminator_step_separates_real_from_fake():
    cfg = tiny_train_config("unused", "unused")
    models = build_models(cfg, CPU)
    real, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, cfg.model.z_dim)
    with torch.no_grad():
        fake = models.G(z)  # the fakes the step makes from z (BatchNorm uses batch statistics either way)

    def margin():  # mean D(real) - mean D(fake); the hinge loss lowers it only by raising this
        models.D.eval()
        with torch.no_grad():
            value = (models.D(real).mean() - models.D(fake).mean()).item()
        models.D.train()
        return value
    before = margin()
    train_step(models, models.G, models.D, real, z, (), torch.Generator(), contextlib.nullcontext())
    assert margin() > before


def test_an_iteration_moves_g_ema_toward_g_by_the_ema_weight():
    # A half-life of 10 images at batch 4 and no ramp-up: each step moves G_ema 24% of the way to G.
    cfg = tiny_train_config("unused", "unused", ema_kimg=0.01, ema_rampup=0.0, diffaugment="color,translation,cutout")
    models = build_models(cfg, CPU)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    before = copy.deepcopy(models.G_ema.state_dict())
    Iteration(models, models.G, models.D, images, cfg, parse_policy(cfg.diffaugment), make_autocast(CPU, "fp32"))()
    weight = 1 - ema_decay(cfg, 1)
    assert weight == pytest.approx(1 - 0.5 ** 0.4)
    g_params, g_buffers = dict(models.G.named_parameters()), dict(models.G.named_buffers())
    for name, value in models.G_ema.named_parameters():
        expected = before[name] + weight * (g_params[name].detach() - before[name])
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=name)
    assert (models.G_ema.to_rgb[0].weight - before["to_rgb.0.weight"]).abs().max() > 1e-6  # G trained; G_ema moved
    for name, value in models.G_ema.named_buffers():
        assert torch.equal(value, g_buffers[name]), name


def test_logged_losses_are_the_mean_over_the_log_window(tmp_path, faces_dir):
    cfg = tiny_train_config(faces_dir, tmp_path / "run", steps=2, log_every=2)
    train(cfg, progress=False, tensorboard=False)
    logged = [e for e in map(json.loads, (tmp_path / "run" / "log.jsonl").open()) if "loss/d" in e]
    assert [e["step"] for e in logged] == [2]
    models = build_models(cfg, CPU)  # the same run, step by step
    images = load_images(faces_dir, 32, cache_dir=tmp_path / "run" / "cache")
    iterate = Iteration(models, models.G, models.D, images, cfg, (), make_autocast(CPU, "fp32"))
    losses = torch.stack([torch.stack(iterate()) for _ in range(2)])
    assert losses[0, 0] != losses[1, 0]
    assert logged[0]["loss/d"] == pytest.approx(losses[:, 0].mean().item(), rel=1e-5)
    assert logged[0]["loss/g"] == pytest.approx(losses[:, 1].mean().item(), rel=1e-5)


def test_ranks_load_their_share_of_the_global_batch_and_their_own_augmentation():
    cfg = TrainConfig(batch_size=3, seed=5)
    inputs = []
    for rank in (0, 1):
        inputs.append(StepInputs(3, CPU))
        inputs[-1].load(cfg, step=7, num_images=20, ranks=Distributed(rank, 2))
    assert torch.equal(torch.cat([i.indices for i in inputs]), batch_indices(20, 6, cfg.seed, 7))
    seeds = [[gen.initial_seed() for gen in i.generators] for i in inputs]
    assert len(set(seeds[0])) == 3  # flips, latents and augmentation are separate streams
    assert seeds[0][:2] == seeds[1][:2]  # flips and latents are drawn for the global batch
    assert seeds[0][2] != seeds[1][2]  # each rank augments its own images


def test_a_generator_step_that_raises_leaves_the_discriminator_trainable(monkeypatch):
    cfg = tiny_train_config("", "unused")
    models = build_models(cfg, torch.device("cpu"))

    def fail():
        raise RuntimeError("capture failed")
    monkeypatch.setattr(models.opt_g, "step", fail)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="capture failed"):
        Iteration(models, models.G, models.D, images, cfg, (), make_autocast(torch.device("cpu"), "fp32"))()
    assert all(p.requires_grad for p in models.D.parameters())


def test_cuda_speed_settings_apply_inside_the_block_and_only_on_cuda():
    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,  # noqa: E731
                     torch.backends.cudnn.benchmark)
    before = flags()
    with cuda_speed_settings(torch.device("cpu")):
        assert flags() == before
    with cuda_speed_settings(torch.device("cuda")):  # only flags: no GPU needed to set them
        assert flags() == (True, True, True)
    assert flags() == before


def test_max_images_trains_on_the_first_files_only(tmp_path, faces_dir, monkeypatch):
    trained_on, original = [], Iteration.__init__

    def recording(self, models, G, D, images, *rest):
        trained_on.append(images)
        original(self, models, G, D, images, *rest)
    monkeypatch.setattr(Iteration, "__init__", recording)
    train_tiny(faces_dir, tmp_path / "run", steps=1, holdout=2, max_images=5)
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert logged["images"] == 5.0
    training_split = load_images(faces_dir, 32, holdout=2, split="train")
    assert torch.equal(trained_on[0], training_split[:5])


def test_run_directory_contents(tmp_path, faces_dir):
    out = tmp_path / "run"
    train_tiny(faces_dir, out, steps=4, keep_ckpts=1)
    assert json.loads((out / "config.json").read_text())["steps"] == 4
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.pt", "step-0000004.pt"]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss/d" in r] == [1, 2, 3, 4]


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, faces_dir):
    straight = train_tiny(faces_dir, tmp_path / "a", steps=4)
    train_tiny(faces_dir, tmp_path / "b", steps=2)
    state = load_training_state(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert state["step"] == 2
    resumed = train(tiny_train_config(faces_dir, tmp_path / "b", steps=4), resume_state=state,
                    progress=False, tensorboard=False)
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_restoring_a_cuda_graph_runs_state_clears_the_capturable_flag():
    cfg = tiny_train_config("", "")
    graphed = build_models(cfg, torch.device("cpu"))
    set_capturable(graphed, True)
    state = training_state(graphed, cfg)
    assert all(g["capturable"] for g in state["opt_g"]["param_groups"] + state["opt_d"]["param_groups"])
    models = build_models(cfg, torch.device("cpu"))
    restore(models, state)
    assert not any(g["capturable"] for opt in (models.opt_g, models.opt_d) for g in opt.param_groups)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, faces_dir):
    models = train_tiny(faces_dir, tmp_path / "run", steps=2)
    state = load_training_state(tmp_path / "run" / "checkpoints" / "latest.pt")
    g = Generator(models.G_ema.cfg).eval()
    g.load_state_dict(state["G_ema"])
    z = torch.randn(3, 8)
    # Training keeps G channels_last; compare in one memory format, where kernels are identical.
    assert torch.equal(g(z), models.G_ema.to(memory_format=torch.contiguous_format)(z))


@pytest.mark.parametrize("dtype,tol", [("fp32", 0.0), ("fp16", 2e-2)])
def test_export_then_load_reproduces_g_ema(tmp_path, faces_dir, dtype, tol):
    models = train_tiny(faces_dir, tmp_path / "run", steps=2)
    export_generator(models.G_ema, tmp_path / "g.safetensors", dtype=dtype, step=2)
    g = load_generator(tmp_path / "g.safetensors")
    z = torch.randn(3, 8)
    assert (g(z) - models.G_ema.to(memory_format=torch.contiguous_format)(z)).abs().max() <= tol


def test_ema_half_life_schedule():
    cfg = tiny_train_config("", "", batch_size=64, ema_kimg=10.0, ema_rampup=0.05)
    assert ema_decay(cfg, 1) < 0.01  # ramp-up: early on the EMA tracks G closely
    assert ema_decay(cfg, 10_000) == pytest.approx(0.5 ** (64 / 10_000))


def test_ema_half_life_counts_the_images_of_every_process():
    """Under torchrun a step trains on batch_size x world images: the half-life in images stays what
    --ema-kimg says, ramp-up included, and the weight each rank's step applies says so too."""
    per_rank, single = (tiny_train_config("", "", batch_size=b, ema_kimg=10.0, ema_rampup=0.05) for b in (16, 64))
    for step in (1, 10, 100, 10_000):
        assert ema_decay(per_rank, step, world=4) == pytest.approx(ema_decay(single, step))
    inputs = StepInputs(16, CPU)
    inputs.load(per_rank, 99, 1000, Distributed(rank=1, world=4))
    assert inputs.ema_weight.item() == pytest.approx(1 - ema_decay(single, 100))


def test_a_run_is_never_overwritten_nor_resumed_past_its_end(tmp_path, faces_dir):
    out = tmp_path / "run"
    train_tiny(faces_dir, out)
    saved = {name: (out / name).read_bytes() for name in ("config.json", "log.jsonl", "checkpoints/latest.pt")}
    with pytest.raises(TrainingError, match="already holds a run .*continue it with --resume"):
        train_tiny(faces_dir, out)
    state = load_training_state(out / "checkpoints" / "latest.pt")
    with pytest.raises(TrainingError, match="already at step 3 and --steps is 2: raise --steps"):
        train(tiny_train_config(faces_dir, out, steps=2), resume_state=state, progress=False, tensorboard=False)
    assert {name: (out / name).read_bytes() for name in saved} == saved
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(TrainingError, match="is a file: give a directory"):
        train_tiny(faces_dir, tmp_path / "file")


def test_sync_bn_in_a_single_process_is_refused(tmp_path, faces_dir):
    with pytest.raises(TrainingError, match="--sync-bn only applies to multi-process runs"):
        train_tiny(faces_dir, tmp_path / "run", sync_bn=True)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_non_finite_losses_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, faces_dir, monkeypatch):
    import sagan.training as training
    calls = {"n": 0}

    def poisoned(real_logits, fake_logits):
        calls["n"] += 1
        loss = d_hinge_loss(real_logits, fake_logits)
        return loss * float("nan") if calls["n"] > 2 else loss

    monkeypatch.setattr(training, "d_hinge_loss", poisoned)
    with pytest.raises(training.TrainingError, match="non-finite by step 4"):
        train_tiny(faces_dir, tmp_path / "run", steps=10, log_every=5, ckpt_every=2)
    state = load_training_state(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def _shifting_extractor(offsets):
    """Features shifted by offsets[k] on the k-th call (the reference is the first call), so the distance
    of each validation's features from the reference, and its FID, is set by the test."""
    calls = []

    def extract(images):
        x = images.float().mean(dim=(2, 3))
        calls.append(1)
        return torch.cat([x, x.square() / 255], dim=1) + float(offsets[len(calls) - 1])
    return extract


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("offsets,best_step", [((0, 1000, 2000), 2), ((0, 2000, 1000), 4)])
def test_validation_fid_is_logged_and_the_best_state_kept(tmp_path, faces_dir, offsets, best_step):
    out = tmp_path / "run"
    train(tiny_train_config(faces_dir, out, steps=4, holdout=4, eval_every=2, eval_samples=8, ckpt_every=4),
          progress=False, tensorboard=False, extractor=_shifting_extractor(offsets), network="tiny")
    entries = _metrics(out)
    assert [e["step"] for e in entries] == [2, 4]
    assert all(e["num_samples"] == 8 and e["num_reference"] == 4 and e["holdout"] == 4 for e in entries)
    fids = [e["fid"] for e in entries]
    assert (fids[1] > fids[0]) == (best_step == 2)
    best = load_training_state(out / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best_fid"] == min(fids)
    assert load_training_state(out / "checkpoints" / "latest.pt")["best_fid"] == min(fids)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["metrics/fid"] for r in logged if "metrics/fid" in r] == fids
    step = export_run(out, str(tmp_path / "best.safetensors"), which="best")
    assert step == best_step
    g = load_generator(tmp_path / "best.safetensors")
    assert all(torch.equal(g.state_dict()[k], v) for k, v in best["G_ema"].items())


def test_resumed_run_remembers_its_best_validation_fid(tmp_path, faces_dir):
    out, extract = tmp_path / "run", _shifting_extractor((0, 1000, 2000))
    cfg = dict(holdout=4, eval_every=2, eval_samples=8, ckpt_every=2)
    train(tiny_train_config(faces_dir, out, steps=2, **cfg), progress=False, tensorboard=False,
          extractor=extract, network="tiny")
    state = load_training_state(out / "checkpoints" / "latest.pt")
    train(tiny_train_config(faces_dir, out, steps=4, **cfg), resume_state=state, progress=False,
          tensorboard=False, extractor=extract, network="tiny")
    assert [e["step"] for e in _metrics(out)] == [2, 4]
    assert load_training_state(out / "checkpoints" / "best.pt")["step"] == 2  # step 4 scored worse


def test_a_state_saved_with_more_gpus_than_this_machine_has_restores(monkeypatch):
    """A run checkpointed on a 4-GPU machine resumes on a 1-GPU one: each GPU present gets its saved
    random state, the missing ones are not asked for."""
    cfg = tiny_train_config("", "")
    models = build_models(cfg, CPU)
    state = copy.deepcopy(training_state(models, cfg))
    state["rng"]["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((int(s[0]), device)))
    restore(build_models(cfg, CPU), state)
    assert restored == [(0, 0)]



def test_the_time_limit_counts_the_data_loading_too(tmp_path, faces_dir, monkeypatch):
    """--max-minutes is a budget for the whole call: a run whose data took longer than the budget to
    load stops at its first log step, checkpointed."""
    import sagan.training as training
    load = training.load_images

    def slow_load(*args, **kwargs):
        time.sleep(3.0)
        return load(*args, **kwargs)
    monkeypatch.setattr(training, "load_images", slow_load)
    models = train_tiny(faces_dir, tmp_path / "run", steps=1000, max_minutes=2 / 60, log_every=1, ckpt_every=100)
    assert models.step == 1
    assert load_training_state(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 1


def test_a_resumed_run_trains_with_the_learning_rates_and_betas_its_config_now_says(tmp_path, faces_dir):
    """A state's optimizers carry their old hyper-parameters; the config's (--lr-g, --beta1, ... given
    with --resume) replace them. A branch into a new directory starts its own best FID."""
    first = train_tiny(faces_dir, tmp_path / "a", steps=2)
    first.best_fid = 5.0
    state = copy.deepcopy(training_state(first, tiny_train_config(faces_dir, tmp_path / "a", steps=2)))
    resumed = train(tiny_train_config(faces_dir, tmp_path / "b", steps=3, lr_g=3e-5, lr_d=2e-4, beta1=0.5,
                                      beta2=0.99), resume_state=state, progress=False, tensorboard=False)
    for opt, lr in ((resumed.opt_g, 3e-5), (resumed.opt_d, 2e-4)):
        assert all(g["lr"] == lr and g["betas"] == (0.5, 0.99) for g in opt.param_groups)
    assert resumed.best_fid == math.inf

