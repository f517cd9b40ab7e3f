"""Semantic directions of a generator's latent space, in closed form (SeFa, Shen & Zhou 2021).

The generator's first layer is linear in z: a transposed convolution of the 1x1 latent map (a matrix
product, y = A z with A = W.flatten(1).T, (C*16, z_dim)) followed by BatchNorm. In eval mode
BatchNorm multiplies channel c by gamma_c / sqrt(running_var_c + eps) and adds a constant, so the
whole layer is z -> A' z + b with A' = A with each channel's 16 rows scaled. An edit z + alpha n then
moves the layer's output by alpha A' n whatever z is, and the unit directions n that move it most are
the top eigenvectors of A'^T A' (GANSpace's PCA of that layer's outputs finds the same ones: their
covariance is A' A'^T). Everything here is a pure function of the weights: running statistics, not
a batch's, so the directions depend on no input.

- ``first_layer_matrix(g)``: A' (C*16, z_dim), BatchNorm's per-channel scale folded in, float64.
- ``sefa(matrix, count)``: (eigenvalues (count,), directions (count, z_dim)), largest first, orthonormal rows.
- ``generator_directions(g, count)``: both of the above for a Generator.
"""
from __future__ import annotations

import torch

from .networks import Generator


def first_layer_matrix(g: Generator) -> torch.Tensor:
    """The first layer's linear map of z as a (C*16, z_dim) float64 matrix, BatchNorm's scale folded in.

    ``.weight`` of the spectral-normalised convolution is the normalised weight the forward pass uses, and
    BatchNorm's running variance the one it divides by: ``g`` must be in eval mode, as exported generators
    load. (In training mode reading the weight would take a power-iteration step, and BatchNorm would use a
    batch's statistics: the directions would depend on the batch.)
    """
    if g.training:
        raise ValueError("SeFa directions are those of a generator in eval mode: call g.eval() first.")
    conv, norm = g.blocks[0][0], g.blocks[0][1]
    weight = conv.weight.detach().to(torch.float64)                     # (z_dim, C, 4, 4)
    scale = norm.weight.detach().to(torch.float64) / torch.sqrt(norm.running_var.to(torch.float64) + norm.eps)
    return (weight * scale[None, :, None, None]).flatten(1).T            # (C*16, z_dim)


def sefa(matrix: torch.Tensor, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``count`` (default: all) eigenvalues of AᵀA, descending, and their unit eigenvectors as rows.

    An eigenvector's sign is arbitrary; each is turned so that its entry of largest magnitude is positive,
    so the same weights give the same directions on any machine.
    """
    a = torch.as_tensor(matrix).to(torch.float64)
    if a.ndim != 2:
        raise ValueError(f"SeFa needs a matrix (outputs, z_dim), got shape {tuple(a.shape)}.")
    z_dim = a.shape[1]
    count = z_dim if count is None else count
    if not 1 <= count <= z_dim:
        raise ValueError(f"a {z_dim}-dimensional latent has 1 to {z_dim} directions, asked for {count}.")
    gram = a.T @ a
    eigenvalues, vectors = torch.linalg.eigh((gram + gram.T) / 2)       # ascending
    eigenvalues, vectors = eigenvalues.flip(0)[:count], vectors.flip(1)[:, :count].T
    largest = vectors.abs().argmax(dim=1, keepdim=True)
    vectors = vectors * torch.sign(vectors.gather(1, largest))
    return eigenvalues.clamp(min=0), vectors


def generator_directions(g: Generator, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues, directions) of ``g``'s latent space, largest first; directions are float32 rows in z."""
    eigenvalues, vectors = sefa(first_layer_matrix(g), count)
    return eigenvalues, vectors.to(torch.float32)
