"""Standing statistics (sagan/standing.py): what they measure, what they leave alone, and that they repeat."""
import torch

from sagan.standing import STANDING_SEED, batch_norms, standing_statistics
from tests.factories import generator_with_copied_statistics


def test_statistics_are_the_mean_and_variance_of_the_generators_own_activations():
    g = generator_with_copied_statistics()
    standing = standing_statistics(g, batches=3, batch_size=8)
    first = standing.blocks[0][1]
    # The same latents, drawn again; the first BatchNorm's input is the first layer's output.
    gen = torch.Generator().manual_seed(STANDING_SEED)
    inputs = []
    handle = g.blocks[0][1].register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(8, g.cfg.z_dim, generator=gen))
    handle.remove()
    # A cumulative average over equal batches: the mean of the batch means, the mean of the unbiased variances.
    means = torch.stack([x.mean((0, 2, 3)) for x in inputs])
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs])
    torch.testing.assert_close(first.running_mean, means.mean(0))
    torch.testing.assert_close(first.running_var, variances.mean(0))
    assert int(first.num_batches_tracked) == 3


def test_only_batchnorm_statistics_change_and_the_original_is_untouched():
    g = generator_with_copied_statistics()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    standing = standing_statistics(g, batches=2, batch_size=4)
    assert not standing.training and all(not m.training for m in standing.modules())
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = {k for k, v in standing.state_dict().items() if not torch.equal(v, before[k])}
    # Weights and spectral norm's power-iteration vectors stay: only the modules in training mode moved.
    assert changed and all(k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")
                           for k in changed)
    assert {m.momentum for m in batch_norms(standing)} == {m.momentum for m in batch_norms(g)}


def test_the_same_weights_give_the_same_statistics_and_zero_batches_keep_the_copied_ones():
    g = generator_with_copied_statistics()
    a, b = (standing_statistics(g, batches=2, batch_size=4).state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    kept = standing_statistics(g, batches=0).state_dict()
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in kept.items())


def test_an_old_export_gets_standing_statistics_without_retraining(tmp_path, capsys):
    """python -m sagan.standing: an export saved without standing statistics (an fp16 one, as bundled) comes
    out as export now writes the same weights, in the same dtype and with its step; nothing else changes."""
    from safetensors import safe_open

    from sagan.checkpoint import export_generator, load_generator, read_export_metadata
    from sagan.standing import main
    g = generator_with_copied_statistics()
    old, new, direct = tmp_path / "old.safetensors", tmp_path / "new.safetensors", tmp_path / "direct.safetensors"
    export_generator(g, old, dtype="fp16", step=1234, standing_batches=0, training={"seed": 5, "model": {}})
    assert main(["--checkpoint", str(old), "--out", str(new), "--batches", "2"]) == 0
    assert '"standing_stats_batches": "2"' in capsys.readouterr().out
    metadata = read_export_metadata(new)
    assert metadata["step"] == "1234" and metadata["standing_stats_batches"] == "2"
    assert metadata["config"] == read_export_metadata(old)["config"]
    assert metadata["training"] == read_export_metadata(old)["training"] == '{"seed": 5}'  # which run made it
    with safe_open(str(new), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} >= {"F16"}
    # The same as exporting the fp16-rounded weights with 2 batches of standing statistics directly.
    export_generator(load_generator(old), direct, dtype="fp16", step=1234, standing_batches=2, training={"seed": 5})
    from safetensors.torch import load_file
    expected, got = load_file(str(direct)), load_file(str(new))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert read_export_metadata(direct) == metadata
    refreshed, before = load_generator(new).state_dict(), load_generator(old).state_dict()
    changed = {k for k in before if not torch.equal(before[k], refreshed[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)


def test_refreshing_a_missing_export_says_what_to_pass(tmp_path, capsys):
    from sagan.standing import main
    assert main(["--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.startswith(f"error: no generator weights at '{tmp_path / 'none.safetensors'}'")
    assert main(["--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.safetensors"),
                 "--batches", "0"]) == 2
    assert "--batches must be 1 or more, not 0" in capsys.readouterr().err
