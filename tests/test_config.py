"""Configuration (sagan/config.py): presets, checks that name their flag, JSON round trips, and how
flags and a resumed run's saved config combine."""
import dataclasses
import json
import re

import pytest

from sagan.config import ModelConfig, TrainConfig, from_flags, preset, resume_changes
from sagan.inception import INCEPTION_SHA256


@pytest.mark.parametrize("size", [32, 64, 128])
def test_presets_place_attention_on_existing_maps(size):
    def placement(name):
        cfg = preset(name, size)
        return cfg.g_attn, cfg.d_attn, cfg.attn_pool
    assert placement("seed") == ((4, 8), (8, 4), False)
    assert placement("sagan") == ((size // 4, size // 2), (size // 4, size // 8), True)
    assert placement("dcgan") == ((), (), False)


def test_bad_values_name_the_fix():
    with pytest.raises(ValueError, match="choose from"):
        ModelConfig(image_size=64, g_attn=(64,))
    with pytest.raises(ValueError, match="not supported"):
        ModelConfig(image_size=48)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("biggan")


@pytest.mark.parametrize("values, message", [
    (dict(g_attn=(7,)), "--g-attn 7: the generator has no 7x7 feature map at image size 64: choose from 4,8,16,32."),
    (dict(image_size=32, g_attn=(8,), d_attn=(3, 8, 32)), "--d-attn 3,32: the discriminator has no 3x3 or 32x32 "
     "feature map at image size 32: choose from 16,8,4."),
    (dict(z_dim=0), "--z-dim must be at least 1, not 0."),
    (dict(conv_dim=4), "--conv-dim must be at least 8, not 4."),
    (dict(image_size=48), "--image-size 48 is not supported: choose one of 32, 64, 128."),
])
def test_unusable_model_values_name_their_flag(values, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ModelConfig(**values)


def test_train_config_json_round_trip():
    cfg = TrainConfig(model=preset("seed", 32), steps=7)
    back = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg and isinstance(back.model, ModelConfig)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**dataclasses.asdict(cfg.model), "depth": 3})


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, "--steps must be at least 1, not 0"),
    ("batch_size", -4, "--batch-size must be at least 1, not -4"),
    ("log_every", 0, "--log-every must be at least 1"),
    ("ckpt_every", 0, "--ckpt-every must be at least 1"),
    ("max_minutes", -1.0, "--max-minutes must be 0 or more"),
    ("max_minutes", float("nan"), "--max-minutes must be 0 or more, not nan"),
    ("lr_g", -1.0, "--lr-g must be a number above 0"),
    ("lr_d", float("inf"), "--lr-d must be a number above 0, not inf"),
    ("ema_kimg", 0.0, "--ema-kimg must be a number above 0"),
    ("out", "", "--out must name the run's directory"),
    ("num_grid", 0, "--num-grid must be from 1 to 1024 faces, not 0"),
    ("beta1", 1.0, "--beta1 must be at least 0 and below 1, not 1.0"),
    ("beta2", -0.1, "--beta2 must be at least 0 and below 1"),
    ("seed", -1, "--seed must be from 0 to 2,147,483,647, not -1"),
    ("seed", 2 ** 62, "--seed must be from 0 to 2,147,483,647"),  # it overflowed the data order's 64-bit seed
    ("device", "gpu", "--device must be auto, cpu, cuda, not 'gpu'"),
    ("precision", "fp16", "--precision must be auto, bf16, fp32, not 'fp16'"),
    ("diffaugment", "color,rotate", "--diffaugment: unknown DiffAugment policy 'rotate': choose from color, "
     "translation, cutout"),
    ("d_steps", 0, "--d-steps must be at least 1, not 0"),
    ("bcr_weight", -1.0, "--bcr-weight must be 0 or more"),
    ("bcr_weight", float("nan"), "--bcr-weight must be 0 or more"),
    ("bcr_weight", float("inf"), "--bcr-weight must be a finite number"),
    ("bcr_augment", "flip", "--bcr-augment: unknown DiffAugment policy 'flip'"),
    ("topk", 1.5, "--topk is the share of fakes G's loss keeps at the end, from 0 .off. to 1, not 1.5"),
    ("topk", float("nan"), "--topk is the share"),
    ("topk_kimg", 0.0, "--topk-kimg must be a number above 0"),
])
def test_unusable_training_values_name_their_flag(field, value, message):
    TrainConfig().check()  # the defaults are usable
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainConfig(), **{field: value}).check()


def test_bcr_needs_an_augmentation_only_when_it_is_on():
    TrainConfig(bcr_augment="").check()
    TrainConfig(bcr_weight=10.0, bcr_augment="translation,cutout").check()
    with pytest.raises(ValueError, match="--bcr-weight needs an augmentation to be consistent under: give "
                                         "--bcr-augment"):
        TrainConfig(bcr_weight=10.0, bcr_augment="").check()


def test_validation_needs_two_samples_only_when_it_runs():
    TrainConfig(eval_samples=0).check()
    with pytest.raises(ValueError, match="--eval-samples must be at least 2"):
        TrainConfig(eval_every=10, eval_samples=1).check()


def test_a_new_runs_flags_build_its_networks_and_options():
    cfg = from_flags({"preset": "seed", "image_size": 32, "conv_dim": 16, "steps": 5, "beta2": 0.99})
    assert cfg.model == preset("seed", 32, conv_dim=16)
    assert (cfg.preset, cfg.steps, cfg.beta2, cfg.lr_g) == ("seed", 5, 0.99, TrainConfig().lr_g)
    assert from_flags({}) == TrainConfig()


def test_a_resumed_run_keeps_its_saved_options_unless_a_flag_overrides_them():
    saved = dataclasses.asdict(TrainConfig(model=preset("dcgan", 32), preset="dcgan", steps=100, lr_d=1e-3))
    cfg = from_flags({"steps": 200, "image_size": 32}, saved)
    assert (cfg.model, cfg.preset, cfg.steps, cfg.lr_d) == (preset("dcgan", 32), "dcgan", 200, 1e-3)
    with pytest.raises(ValueError, match="cannot change --conv-dim, --preset when resuming"):
        from_flags({"preset": "sagan", "conv_dim": 32}, saved)
    with pytest.raises(ValueError, match="cannot change --holdout when resuming: a run keeps its networks, its "
                                         "validation split"):
        from_flags({"holdout": 5}, saved)
    assert from_flags({"holdout": 0}, saved).holdout == 0  # the value it has is no change
    with pytest.raises(ValueError, match="cannot change --inception-sha256 when resuming: .* the network its FIDs "
                                         "are measured with"):
        from_flags({"inception_sha256": "ab" * 32}, saved)
    assert from_flags({"inception": "/moved/inception.pt"}, saved).inception == "/moved/inception.pt"  # a file moves
    assert from_flags({"inception_sha256": INCEPTION_SHA256.upper()}, saved).inception_sha256 == INCEPTION_SHA256


def test_the_ema_half_life_is_saved_as_given_and_a_resumed_run_keeps_its_own():
    cfg = TrainConfig()
    cfg.check()  # None: scaled with the batch where it is used (step.ema_half_life_kimg)
    assert cfg.ema_kimg is None and json.loads(cfg.to_json())["ema_kimg"] is None
    earlier = dataclasses.asdict(TrainConfig(ema_kimg=10.0))  # a run started before the default scaled
    assert from_flags({"steps": 200}, earlier).ema_kimg == 10.0
    assert resume_changes(earlier, from_flags({"ema_kimg": 20.0}, earlier)) == ["--ema-kimg 10.0 -> 20.0"]


def test_a_resumed_run_names_the_changed_settings_that_change_how_it_trains():
    saved = dataclasses.asdict(TrainConfig(steps=100))
    cfg = from_flags({"steps": 200, "log_every": 5, "out": "elsewhere", "eval_every": 10, "lr_d": saved["lr_d"],
                      "seed": 5, "batch_size": 4, "max_images": 100, "diffaugment": "color", "d_steps": 2,
                      "bcr_weight": 10.0, "topk": 0.5}, saved)
    assert resume_changes(saved, cfg) == ["--max-images 0 -> 100", "--batch-size 64 -> 4", "--seed 0 -> 5",
                                          "--diffaugment '' -> 'color'", "--d-steps 1 -> 2",
                                          "--bcr-weight 0.0 -> 10.0", "--topk 0.0 -> 0.5"]
    assert resume_changes(saved, from_flags({"steps": 200, "precision": "auto"}, saved)) == []


def test_a_run_saved_before_the_fid_network_was_recorded_resumes_with_the_standard_one_or_the_one_named():
    saved = dataclasses.asdict(TrainConfig(steps=100))
    del saved["inception"], saved["inception_sha256"]
    cfg = from_flags({"steps": 200}, saved)
    assert (cfg.inception, cfg.inception_sha256) == ("", INCEPTION_SHA256)
    assert from_flags({"inception_sha256": "ab" * 32}, saved).inception_sha256 == "ab" * 32


def test_a_flag_that_is_no_training_option_is_refused():
    with pytest.raises(ValueError, match=r"unknown training option\(s\) \['export'\]"):
        from_flags({"export": "g.safetensors"})



def test_attention_defaults_to_whitened_cosine_at_a_fixed_scale_and_older_configs_keep_what_they_trained():
    cfg = ModelConfig()
    assert (cfg.attn_dnl, cfg.attn_cosine, cfg.attn_rel_pos, cfg.attn_heads, cfg.attn_gamma_init, cfg.attn_whiten,
            cfg.attn_cosine_scale, cfg.attn_cosine_fixed) == (False, True, False, 1, 0.0, True, 20.0, True)
    saved = dataclasses.asdict(cfg)

    def written_without(*fields, **values):  # a config file from before ``fields`` existed
        return {k: v for k, v in saved.items() if k not in fields} | values

    sagan_block = dataclasses.replace(cfg, attn_cosine=False, attn_whiten=False, attn_cosine_scale=10.0,
                                      attn_cosine_fixed=False)
    later = ("attn_cosine_scale", "attn_cosine_fixed")
    assert ModelConfig.from_dict({k: v for k, v in saved.items()
                                  if not k.startswith("attn_") or k == "attn_pool"}) == sagan_block
    assert ModelConfig.from_dict(written_without("attn_whiten", *later, attn_cosine=False)) == sagan_block
    # Whitened cosine logits with a learned scale from 10, the default before the scale's fields existed.
    learned = dataclasses.replace(cfg, attn_cosine_scale=10.0, attn_cosine_fixed=False)
    assert ModelConfig.from_dict(written_without(*later)) == learned
    assert ModelConfig.from_dict(written_without("attn_cosine_fixed", attn_cosine_scale=10.0)) == learned
    assert ModelConfig.from_dict(json.loads(json.dumps(saved))) == cfg
    chosen = preset("sagan", 32, attn_dnl=True, attn_cosine=True, attn_rel_pos=True, attn_heads=4,
                    attn_gamma_init=0.5, attn_whiten=False, attn_cosine_scale=30.0, attn_cosine_fixed=False)
    assert ModelConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(chosen)))) == chosen
    # The blog's generator: the SAGAN block at 4x4 and 8x8, full keys.
    assert preset("seed") == dataclasses.replace(sagan_block, g_attn=(4, 8), d_attn=(8, 4), attn_pool=False)
    assert preset("seed") == ModelConfig.from_dict({"g_attn": [4, 8], "d_attn": [8, 4], "attn_pool": False})


def test_attention_options_are_flags_a_resumed_run_keeps():
    cfg = from_flags({"image_size": 32, "attn_dnl": True, "attn_heads": 2, "attn_gamma_init": 0.1})
    assert (cfg.model.attn_dnl, cfg.model.attn_heads, cfg.model.attn_gamma_init) == (True, 2, 0.1)
    saved = dataclasses.asdict(cfg)
    assert from_flags({"steps": 9}, saved).model == cfg.model
    for flag, value in (("attn_dnl", False), ("attn_cosine", False), ("attn_rel_pos", True), ("attn_heads", 4),
                        ("attn_gamma_init", 0.0), ("attn_whiten", False), ("attn_cosine_scale", 30.0),
                        ("attn_cosine_fixed", False)):
        with pytest.raises(ValueError, match=f"cannot change --{flag.replace('_', '-')} when resuming"):
            from_flags({flag: value}, saved)


@pytest.mark.parametrize("values, message", [
    (dict(attn_heads=0), "--attn-heads 0 must divide --conv-dim / 8 = 8"),
    (dict(attn_heads=3), "--attn-heads 3 must divide --conv-dim / 8 = 8"),
    (dict(attn_gamma_init=float("nan")), "--attn-gamma-init must be a number, not nan."),
    (dict(attn_cosine_scale=0.0), "--attn-cosine-scale must be above 0 and at most 100 (the scale's clamp), not 0.0."),
    (dict(attn_cosine_scale=150.0), "--attn-cosine-scale must be above 0 and at most 100"),
    (dict(attn_cosine_scale=float("nan")), "--attn-cosine-scale must be above 0 and at most 100"),
])
def test_unusable_attention_options_name_their_flag(values, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        ModelConfig(**values)
