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
