"""SeFa directions (sagan.directions) of tiny generators with known first layers."""
from __future__ import annotations

import pytest
import torch

from sagan.directions import first_layer_matrix, generator_directions, sefa
from sagan.networks import Generator
from tests.factories import tiny_model

Z_DIM = 12


def tiny_generator(seed: int = 0) -> Generator:
    """A tiny generator whose BatchNorm has learned-looking scales and running statistics, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        g = Generator(tiny_model(z_dim=Z_DIM))
        norm = g.blocks[0][1]
        norm.weight.data = torch.rand_like(norm.weight) + 0.5
        norm.bias.data = torch.randn_like(norm.bias)
        norm.running_mean = torch.randn_like(norm.running_mean)
        norm.running_var = torch.rand_like(norm.running_var) * 3 + 0.1
    return g.eval()


def first_layer(g: Generator, z: torch.Tensor) -> torch.Tensor:
    """The first block's output before its ReLU, as the generator's forward pass computes it."""
    with torch.no_grad():
        x = (z @ g.blocks[0][0].weight.flatten(1)).view(z.shape[0], -1, 4, 4)
        return g.blocks[0][1](x).flatten(1)


def test_directions_are_orthonormal_and_sorted_by_eigenvalue():
    eigenvalues, directions = generator_directions(tiny_generator())
    assert directions.shape == (Z_DIM, Z_DIM) and eigenvalues.shape == (Z_DIM,)
    torch.testing.assert_close(directions @ directions.T, torch.eye(Z_DIM), atol=1e-5, rtol=0)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all() and eigenvalues[-1] >= 0
    top, first = generator_directions(tiny_generator(), 3)
    torch.testing.assert_close(first, directions[:3])
    torch.testing.assert_close(top, eigenvalues[:3])


def test_a_unit_step_moves_the_first_layer_by_the_root_of_its_eigenvalue_whatever_the_face():
    """What makes the directions the layer's own: the folded matrix is the eval-mode layer's linear part,
    so a step's effect is the same for every latent, and the top direction moves the layer most."""
    g = tiny_generator()
    eigenvalues, directions = generator_directions(g)
    z = torch.randn(5, Z_DIM, generator=torch.Generator().manual_seed(1))
    for eigenvalue, n in zip(eigenvalues, directions):
        moved = first_layer(g, z + 2.0 * n) - first_layer(g, z)
        torch.testing.assert_close(moved, moved[:1].expand_as(moved), atol=1e-4, rtol=0)
        torch.testing.assert_close(moved[0].double().norm(), 2.0 * eigenvalue.sqrt(), rtol=1e-4, atol=0)
    random = torch.nn.functional.normalize(torch.randn(100, Z_DIM, generator=torch.Generator().manual_seed(2)), dim=1)
    assert (first_layer(g, random) - first_layer(g, torch.zeros(1, Z_DIM))).norm(dim=1).max() ** 2 <= eigenvalues[0]


def test_a_planted_dominant_direction_behind_batchnorm_is_found():
    """One channel's weights all point along u and BatchNorm scales that channel 50x: u is the top direction,
    which only the folded-in scale reveals (the raw weights make u no stronger than any other direction)."""
    g = tiny_generator()
    u = torch.nn.functional.normalize(torch.randn(Z_DIM, generator=torch.Generator().manual_seed(3)), dim=0)
    conv, norm = g.blocks[0][0], g.blocks[0][1]
    original = conv.parametrizations.weight.original.data
    pattern = torch.rand(4, 4, generator=torch.Generator().manual_seed(4)) + 0.5
    original[:, 0] = u[:, None, None] * pattern * original.std() * 4 / pattern.norm()
    norm.weight.data.fill_(1.0)
    norm.running_var.fill_(1.0)
    norm.weight.data[0] = 50.0
    _, directions = generator_directions(g, 1)
    assert abs(float(directions[0] @ u)) > 0.99
    norm.weight.data[0] = 1.0  # without the scale, u is no longer the top direction
    _, directions = generator_directions(g, 1)
    assert abs(float(directions[0] @ u)) < 0.9


def test_the_directions_depend_on_the_weights_alone_not_on_a_batch():
    g = tiny_generator()
    before = generator_directions(g)
    with torch.no_grad():
        for batch in (1, 7):
            g(torch.randn(batch, Z_DIM))  # eval mode: the running statistics stay
    for a, b in zip(before, generator_directions(g)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    g.train()  # there, BatchNorm would use the batch's statistics, and reading the weight would change it
    with pytest.raises(ValueError, match=r"g.eval\(\)"):
        generator_directions(g)


def test_signs_are_fixed_so_every_machine_gets_the_same_directions():
    matrix = torch.randn(40, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, directions = sefa(matrix)
    largest = directions.abs().argmax(dim=1)
    assert (directions[torch.arange(6), largest] > 0).all()
    _, flipped = sefa(-matrix)  # the same Gram matrix
    torch.testing.assert_close(flipped, directions)


def test_the_folded_matrix_has_a_row_per_output_and_bad_counts_are_refused():
    g = tiny_generator()
    assert first_layer_matrix(g).shape == (g.blocks[0][1].num_features * 16, Z_DIM)
    for count in (0, Z_DIM + 1):
        with pytest.raises(ValueError, match=f"1 to {Z_DIM} directions"):
            sefa(first_layer_matrix(g), count)
