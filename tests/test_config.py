import dataclasses
import json

import pytest

from sagan.config import ModelConfig, TrainConfig, preset


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
    ("lr_g", -1.0, "--lr-g must be above 0"),
    ("ema_kimg", 0.0, "--ema-kimg must be above 0"),
])
def test_unusable_training_values_name_their_flag(field, value, message):
    TrainConfig().check()  # the defaults are usable
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainConfig(), **{field: value}).check()


def test_validation_needs_two_samples_only_when_it_runs():
    TrainConfig(eval_samples=0).check()
    with pytest.raises(ValueError, match="--eval-samples must be at least 2"):
        TrainConfig(eval_every=10, eval_samples=1).check()
