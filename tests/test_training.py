"""The training loop (sagan/training.py): logging, checkpoints, resuming, time limits,
validation, and the refusals that keep a run from being overwritten."""
import copy
import json
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sagan.checkpoint import export_generator, export_run, load_generator, load_training_state
from sagan.data import load_images
from sagan.losses import d_hinge_loss
from sagan.networks import Generator
from sagan.step import Iteration, build_models, make_autocast, training_state
from sagan.training import TrainingError, train
from tests.factories import tiny_train_config, train_tiny

CPU = torch.device("cpu")


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
    (cached,) = (tmp_path / "run" / "cache").glob("images-*.npy")  # a small run decodes no more than it uses
    assert np.load(cached).shape[0] == 5


def test_run_directory_contents(tmp_path, faces_dir):
    out = tmp_path / "run"
    train_tiny(faces_dir, out, steps=4, keep_ckpts=1)
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 4 and config["cuda_graphs"] is None  # None: decided by the machine, as logged
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest.pt", "step-0000004.pt"]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss/d" in r] == [1, 2, 3, 4]
    assert logged[0]["event/start"] == 1.0 and logged[0]["cuda_graphs"] == 0.0  # on a CPU: eager steps


# bf16: what --precision auto trains in on CPUs that compute it natively (AVX-512 BF16, AMX).
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, faces_dir, precision):
    straight = train_tiny(faces_dir, tmp_path / "a", steps=4, precision=precision)
    train_tiny(faces_dir, tmp_path / "b", steps=2, precision=precision)
    state = load_training_state(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert state["step"] == 2
    resumed = train(tiny_train_config(faces_dir, tmp_path / "b", steps=4, precision=precision), resume_state=state,
                    progress=False, tensorboard=False)
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_run_with_two_d_steps_bcr_and_top_k_resumes_bit_for_bit(tmp_path, faces_dir):
    """Each step's D batches, latents, augmentations and top-k count are functions of (seed, step) too."""
    recipe = dict(d_steps=2, bcr_weight=10.0, bcr_augment="translation,cutout", topk=0.5, topk_kimg=0.004,
                  diffaugment="color")
    straight = train_tiny(faces_dir, tmp_path / "a", steps=4, **recipe)
    train_tiny(faces_dir, tmp_path / "b", steps=2, **recipe)
    state = load_training_state(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert state["config"]["d_steps"] == 2 and state["config"]["topk"] == 0.5
    resumed = train(tiny_train_config(faces_dir, tmp_path / "b", steps=4, **recipe), resume_state=state,
                    progress=False, tensorboard=False)
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert straight.opt_d.state_dict()["state"][0]["step"].item() == 8  # two D updates per step


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
    export_generator(models.G_ema, tmp_path / "g.safetensors", dtype=dtype, step=2, standing_batches=0)
    g = load_generator(tmp_path / "g.safetensors")
    z = torch.randn(3, 8)
    assert (g(z) - models.G_ema.to(memory_format=torch.contiguous_format)(z)).abs().max() <= tol


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
    import sagan.step as step
    calls = {"n": 0}

    def poisoned(real_logits, fake_logits):
        calls["n"] += 1
        loss = d_hinge_loss(real_logits, fake_logits)
        return loss * float("nan") if calls["n"] > 2 else loss

    monkeypatch.setattr(step, "d_hinge_loss", poisoned)
    with pytest.raises(TrainingError, match="non-finite by step 4"):
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
def test_validation_fid_is_logged_and_the_best_state_kept(tmp_path, faces_dir, offsets, best_step, capsys):
    out = tmp_path / "run"
    train(tiny_train_config(faces_dir, out, steps=4, holdout=4, eval_every=2, eval_samples=8, ckpt_every=4,
                            inception_sha256="tiny"),
          progress=False, tensorboard=False, extractor=_shifting_extractor(offsets))
    assert capsys.readouterr().err == ""  # no progress bars asked for: validation's stay hidden too
    entries = _metrics(out)
    assert [e["step"] for e in entries] == [2, 4] and {e["network"] for e in entries} == {"tiny"}
    assert all(e["num_samples"] == 8 and e["num_reference"] == 4 and e["holdout"] == 4 for e in entries)
    fids = [e["fid"] for e in entries]
    assert (fids[1] > fids[0]) == (best_step == 2)
    best = load_training_state(out / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best_fid"] == min(fids)
    assert load_training_state(out / "checkpoints" / "latest.pt")["best_fid"] == min(fids)
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["metrics/fid"] for r in logged if "metrics/fid" in r] == fids
    for name in ("kid", "precision", "recall"):  # holdout 4 and 8 samples: enough for k = 3 neighbours
        assert [r[f"metrics/{name}"] for r in logged if f"metrics/{name}" in r] == [e[name] for e in entries]
        assert all(e[name] is not None for e in entries)
    # The attention figures of each validated G_ema, in metrics.jsonl and in the logged scalars.
    assert all(set(e["attention"]) == {"attn.8", "attn.16"} for e in entries)
    assert [r["attention/attn.16/mi_bits"] for r in logged if "attention/attn.16/mi_bits" in r] == \
        [e["attention"]["attn.16"]["mi_bits"] for e in entries]
    # Without standing statistics, so the export holds the best state's G_ema exactly.
    step = export_run(out, str(tmp_path / "best.safetensors"), which="best", standing_batches=0)
    assert step == best_step
    g = load_generator(tmp_path / "best.safetensors")
    assert all(torch.equal(g.state_dict()[k], v) for k, v in best["G_ema"].items())


def test_validation_scores_the_faces_the_best_export_draws(tmp_path, faces_dir):
    """best.pt is chosen on validation FIDs, so they must be measured with the standing statistics export
    writes: the best state's export, scored afresh, gets the FID its validation logged."""
    from sagan.evaluate import reference_statistics, score

    def extract(images):
        x = images.float().mean(dim=(2, 3))
        return torch.cat([x, x.square() / 255], dim=1)
    out = tmp_path / "run"
    cfg = tiny_train_config(faces_dir, out, steps=2, holdout=4, eval_every=2, eval_samples=8, ckpt_every=2,
                            inception_sha256="tiny")
    train(cfg, progress=False, tensorboard=False, extractor=extract, standing_batches=3)
    (entry,) = _metrics(out)
    assert entry["standing_stats_batches"] == 3
    export_run(out, str(tmp_path / "best.safetensors"), which="best", standing_batches=3)
    ref = reference_statistics(faces_dir, cfg.model.image_size, extract, "tiny", holdout=4,
                               cache_dir=tmp_path / "cache", progress=False)
    exported = score(load_generator(tmp_path / "best.safetensors"), ref, extract, 8, progress=False)
    assert exported["fid"] == pytest.approx(entry["fid"], rel=1e-5)
    # G_ema's own (copied) statistics draw other faces: the check above can tell them apart.
    copied = score(_best_g_ema(out), ref, extract, 8, progress=False)
    assert abs(copied["fid"] - entry["fid"]) > 1e-3 * entry["fid"]


def _best_g_ema(out):
    state = load_training_state(out / "checkpoints" / "best.pt")
    g = Generator(tiny_train_config(".", out).model)
    g.load_state_dict(state["G_ema"])
    return g.eval()


def test_the_logged_speed_counts_training_steps_not_validation(tmp_path, faces_dir, monkeypatch):
    """A validation that takes 100 s after step 1 must not show up as a crawl at step 2."""
    import sagan.training as training
    # The loop's clock jumps 100 s per validation instead of the test sleeping: a real sleep of a second
    # was too close to a step's own time on a busy machine.
    skipped = [0.0]
    monkeypatch.setattr(training, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + skipped[0]))
    shifting = _shifting_extractor([0] * 10)

    def slow(images):
        skipped[0] += 100.0  # once for the reference, before training, then once per validation
        return shifting(images)
    out = tmp_path / "run"
    cfg = tiny_train_config(faces_dir, out, steps=2, holdout=4, eval_every=1, eval_samples=2, log_every=1,
                            inception_sha256="tiny")
    train(cfg, progress=False, tensorboard=False, extractor=slow)
    speeds = [r["speed/img_per_s"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
              if "speed/img_per_s" in r]
    assert len(speeds) == 2, speeds
    assert cfg.batch_size / speeds[1] < 50, speeds  # step 2's logged time holds none of step 1's validation


def test_resumed_run_remembers_its_best_validation_fid(tmp_path, faces_dir):
    out, extract = tmp_path / "run", _shifting_extractor((0, 1000, 2000))
    cfg = dict(holdout=4, eval_every=2, eval_samples=8, ckpt_every=2, inception_sha256="tiny")
    train(tiny_train_config(faces_dir, out, steps=2, **cfg), progress=False, tensorboard=False, extractor=extract)
    state = load_training_state(out / "checkpoints" / "latest.pt")
    train(tiny_train_config(faces_dir, out, steps=4, **cfg), resume_state=state, progress=False,
          tensorboard=False, extractor=extract)
    assert [e["step"] for e in _metrics(out)] == [2, 4]
    assert load_training_state(out / "checkpoints" / "best.pt")["step"] == 2  # step 4 scored worse


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

