import dataclasses
import json

import pytest

from sagan.config import ModelConfig, TrainConfig, preset


@pytest.mark.parametrize("size", [32, 64, 128])
def test_presets_place_attention_on_existing_maps(size):
    assert preset("seed", size).g_attn == (4, 8)
    assert preset("sagan", size).g_attn == (size // 4, size // 2)
    assert preset("dcgan", size).g_attn == () and preset("dcgan", size).d_attn == ()


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
