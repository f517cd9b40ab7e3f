"""The training step (sagan/step.py): what one iteration does, each rank's share of a batch, the EMA,
and restoring a training state."""
import contextlib
import copy
import dataclasses

import pytest
import torch

from sagan.augment import parse_policy
from sagan.config import TrainConfig
from sagan.data import batch_indices
from sagan.distributed import Distributed
from sagan.graphs import set_capturable
from sagan.step import (Iteration, Recipe, StepInputs, build_models, cuda_speed_settings, ema_decay,
                        ema_half_life_kimg, make_autocast, restore, train_step, training_state)
from tests.factories import tiny_train_config

CPU = torch.device("cpu")


def test_one_step_gives_finite_losses_and_changes_weights():
    cfg = tiny_train_config("unused", "unused")
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


@pytest.mark.parametrize("policy", [(), parse_policy("translation,cutout")])
def test_with_diffaugment_both_updates_show_d_augmented_fakes(policy):
    """DiffAugment only works if G learns through the same augmentations D sees (Zhao et al. 2020)."""
    cfg = tiny_train_config("unused", "unused")
    models = build_models(cfg, CPU)
    fakes, d_inputs = [], []
    models.G.register_forward_hook(lambda module, args, output: fakes.append(output.detach().clone()))
    models.D.register_forward_pre_hook(lambda module, args: d_inputs.append(args[0].detach().clone()))
    real, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, cfg.model.z_dim)
    train_step(models, models.G, models.D, real, z, policy, torch.Generator().manual_seed(0), contextlib.nullcontext())
    (fake,), (d_step, g_step) = fakes, d_inputs
    assert g_step.shape == fake.shape
    assert torch.equal(d_step[4:], fake) is not bool(policy) and torch.equal(g_step, fake) is not bool(policy)


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


def test_restoring_a_cuda_graph_runs_state_clears_the_capturable_flag():
    cfg = tiny_train_config("", "")
    graphed = build_models(cfg, torch.device("cpu"))
    set_capturable(graphed, True)
    state = training_state(graphed, cfg)
    assert all(g["capturable"] for g in state["opt_g"]["param_groups"] + state["opt_d"]["param_groups"])
    models = build_models(cfg, torch.device("cpu"))
    restore(models, state)
    assert not any(g["capturable"] for opt in (models.opt_g, models.opt_d) for g in opt.param_groups)


def test_ema_half_life_schedule():
    cfg = tiny_train_config("", "", batch_size=64, ema_kimg=10.0, ema_rampup=0.05)
    assert ema_decay(cfg, 1) < 0.01  # ramp-up: early on the EMA tracks G closely
    assert ema_decay(cfg, 10_000) == pytest.approx(0.5 ** (64 / 10_000))


@pytest.mark.parametrize("batch, world, kimg", [(256, 1, 80), (64, 1, 20), (64, 4, 80), (32, 1, 10)])
def test_the_default_ema_half_life_scales_with_the_global_batch(batch, world, kimg):
    cfg = tiny_train_config("", "", batch_size=batch)
    assert cfg.ema_kimg is None and ema_half_life_kimg(cfg, world) == kimg  # StyleGAN2-ADA: 10 kimg per 32 images
    # Past the ramp-up the half-life is 312.5 steps whatever the batch.
    assert ema_decay(cfg, 10 ** 7, world) ** 312.5 == pytest.approx(0.5)
    # The ramp-up: after 100 steps the half-life is 5% of the images seen.
    assert ema_decay(cfg, 100, world) == pytest.approx(0.5 ** (1 / (100 * 0.05)))
    assert ema_half_life_kimg(tiny_train_config("", "", batch_size=batch, ema_kimg=10.0), world) == 10.0


def test_the_old_and_new_default_half_lives_agree_while_the_ramp_up_rules():
    """At batch 64 the ramp-up caps both below 10 kimg until 200k images are seen: the two defaults only part
    after that (why a short CPU run cannot tell them apart)."""
    new, old = (tiny_train_config("", "", batch_size=64, ema_kimg=kimg) for kimg in (None, 10.0))
    assert all(ema_decay(new, step) == ema_decay(old, step) for step in (1, 100, 1000, 3125))
    assert ema_decay(new, 6250) > ema_decay(old, 6250)


def test_ema_half_life_counts_the_images_of_every_process():
    """Under torchrun a step trains on batch_size x world images: the half-life in images stays what
    --ema-kimg says, ramp-up included, and the weight each rank's step applies says so too."""
    per_rank, single = (tiny_train_config("", "", batch_size=b, ema_kimg=10.0, ema_rampup=0.05) for b in (16, 64))
    for step in (1, 10, 100, 10_000):
        assert ema_decay(per_rank, step, world=4) == pytest.approx(ema_decay(single, step))
    inputs = StepInputs(16, CPU)
    inputs.load(per_rank, 99, 1000, Distributed(rank=1, world=4))
    assert inputs.ema_weight.item() == pytest.approx(1 - ema_decay(single, 100))


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


def _d_after_one_step(recipe: Recipe, seed: int = 0) -> dict:
    cfg = tiny_train_config("unused", "unused")
    models = build_models(cfg, CPU)
    real, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, cfg.model.z_dim)
    train_step(models, models.G, models.D, real, z, recipe.policy, torch.Generator().manual_seed(seed),
               contextlib.nullcontext(), recipe)
    return models.D.state_dict()


def test_bcr_changes_nothing_under_an_identity_augmentation_and_regularises_d_otherwise(monkeypatch):
    plain = _d_after_one_step(Recipe())
    bcr = Recipe(bcr_weight=10.0, bcr_policy=("translation",))
    regularised = _d_after_one_step(bcr)
    assert any(not torch.allclose(plain[k], regularised[k], atol=1e-5) for k in plain)
    monkeypatch.setattr("sagan.augment.translation", lambda x, gen: x)
    identity = _d_after_one_step(bcr)
    for k in plain:  # (the forward pass of 4 batches instead of 2 may round differently)
        torch.testing.assert_close(identity[k], plain[k], rtol=0, atol=1e-6, msg=k)


def test_bcr_compares_each_image_with_its_own_augmented_copy(monkeypatch):
    """D sees real, fake, augmented real, augmented fake in one pass; the loss pairs them in that order."""
    seen, pairs = [], []
    monkeypatch.setattr("sagan.step.consistency_loss", lambda a, b: pairs.append((a, b)) or (a - b).square().mean())
    cfg = tiny_train_config("unused", "unused")
    models = build_models(cfg, CPU)
    models.D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    real, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, cfg.model.z_dim)
    train_step(models, models.G, models.D, real, z, (), torch.Generator().manual_seed(0), contextlib.nullcontext(),
               Recipe(bcr_weight=1.0, bcr_policy=("cutout",)))
    d_input = seen[0]
    assert d_input.shape[0] == 16 and torch.equal(d_input[:4], real)
    assert torch.equal(d_input[8:12], d_input[:4] * (d_input[8:12] != 0))  # cutout zeroes part of each real image
    assert [tuple(a.shape) for pair in pairs for a in pair] == [(4,)] * 4


def test_top_k_gives_g_gradients_through_the_best_scored_fakes_only():
    cfg = tiny_train_config("unused", "unused")
    models = build_models(cfg, CPU)
    grads, outputs = [], []

    def keep(module, args, output):
        if not torch.is_grad_enabled() or models.D.to_logit.parametrizations.weight.original.requires_grad:
            return  # the D update's pass
        outputs.append(output.detach().clone())
        output.register_hook(lambda g: grads.append(g.clone()))
    models.D.register_forward_hook(keep)
    real, z = torch.rand(8, 3, 32, 32) * 2 - 1, torch.randn(8, cfg.model.z_dim)
    train_step(models, models.G, models.D, real, z, (), torch.Generator(), contextlib.nullcontext(),
               Recipe(topk=True), torch.tensor(3))
    (logits,), (grad,) = outputs, grads
    best = set(logits.topk(3).indices.tolist())
    assert {i for i in range(8) if grad[i] != 0} == best
    assert grad[list(best)].tolist() == [pytest.approx(-1 / 3)] * 3


def test_two_d_steps_make_two_d_updates_on_their_own_images_and_one_g_update(monkeypatch):
    cfg = tiny_train_config("unused", "unused", d_steps=2, diffaugment="translation")
    models = build_models(cfg, CPU)
    calls = []
    for name in ("opt_g", "opt_d"):
        opt = getattr(models, name)
        monkeypatch.setattr(opt, "step", lambda *a, name=name, step=opt.step: calls.append(name) or step(*a))
    fakes = []
    models.G.register_forward_hook(lambda module, args, output: fakes.append(output.detach().clone()))
    images = torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 32, 32).to(torch.uint8)  # image i is all i
    iterate = Iteration(models, models.G, models.D, images, cfg, parse_policy(cfg.diffaugment),
                        make_autocast(CPU, "fp32"))
    real_seen = []
    models.D.register_forward_pre_hook(lambda module, args: real_seen.append(args[0][:4].detach().clone())
                                       if len(real_seen) < 2 else None)
    iterate()
    assert calls == ["opt_d", "opt_d", "opt_g"] and models.step == 1
    assert len(fakes) == 2 and not torch.equal(fakes[0], fakes[1])  # each D update draws its own latents
    drawn = batch_indices(10, 8, cfg.seed, 0)
    assert torch.equal(iterate.inputs.indices, drawn)  # one draw of d_steps x batch images per step
    levels = [((r[:, 0, 16, 16] + 1) * 127.5).round().long() for r in real_seen]  # (a pixel translation keeps)
    assert torch.equal(torch.cat(levels), drawn)  # the first D update on the first batch, the second on the next


def test_ranks_share_each_d_updates_global_batch():
    cfg = TrainConfig(batch_size=3, seed=5, d_steps=2)
    inputs = [StepInputs(3, CPU, d_steps=2) for _ in range(2)]
    for rank, i in enumerate(inputs):
        i.load(cfg, step=7, num_images=40, ranks=Distributed(rank, 2))
    drawn = batch_indices(40, 12, cfg.seed, 7).view(2, 6)  # the global batches of the two D updates
    for update in range(2):
        assert torch.equal(torch.cat([i.indices.view(2, 3)[update] for i in inputs]), drawn[update])


def test_the_top_k_count_a_step_loads_follows_the_images_g_has_trained_on():
    cfg = TrainConfig(batch_size=100, topk=0.5, topk_kimg=1.0)
    inputs = StepInputs(100, CPU)
    for step, expected in ((0, 100), (10, 99), (10 * 100, round(100 * 0.99 ** 100 + 0)), (10 ** 6, 50)):
        inputs.load(cfg, step=step, num_images=1000, ranks=Distributed())
        assert inputs.topk_k.item() == max(50, expected), step
    off = StepInputs(100, CPU)
    off.load(dataclasses.replace(cfg, topk=0.0), step=5, num_images=1000, ranks=Distributed())
    assert off.topk_k.item() == 0
