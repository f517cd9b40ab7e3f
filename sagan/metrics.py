"""FID and KID as pure functions of feature tensors (B, D); everything is computed in float64.

- ``statistics(features)``: mean and covariance (unbiased, like ``np.cov``), what FID needs of a set.
- ``fid_from_statistics(mu_a, sigma_a, mu_b, sigma_b)`` / ``fid(a, b)``: the Fréchet distance
  |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2), as in StyleGAN3's metrics. The trace of
  the matrix square root is the sum of the square roots of the eigenvalues of S_a^1/2 S_b S_a^1/2, a
  symmetric PSD matrix with the same spectrum as S_a S_b: two ``eigh`` calls in torch, no scipy.
- ``kid(a, b)``: the unbiased MMD^2 with the cubic polynomial kernel (x.y / D + 1)^3, averaged over
  random subsets, as in StyleGAN3's and clean-fid's KID (100 subsets of up to 1000 by default).
- ``precision_recall(real, fake)``: improved precision and recall (Kynkäänniemi et al. 2019, as in
  StyleGAN2/3's metrics, k = 3): the share of fakes inside the real set's manifold (the union of
  balls around each real feature out to its k-th nearest real neighbour), and of reals inside the
  fakes' manifold. Precision says how realistic the fakes are, recall how much of the real variety
  they cover; both depend on the set sizes, so compare them at equal sizes. (The paper embeds images
  with VGG-16; here the features are whatever the caller passes, Inception's in sagan.evaluate.)
- ``overfitting(train_logits, heldout_logits)``: ADA's r_t, the mean sign of D's logits, on training faces
  and on held-out ones, and the gap between them (sagan.overfit measures it on a run).
"""
from __future__ import annotations

import torch

NEIGHBOURS = 3  # k of precision and recall, as in Kynkäänniemi et al. and StyleGAN2/3


def statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of features (N, D), float64."""
    x = torch.as_tensor(features).to(torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"statistics need features of shape (N >= 2, D), got {tuple(x.shape)}.")
    return x.mean(0), torch.cov(x.T)


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    eigenvalues, vectors = torch.linalg.eigh(sigma)
    # Covariances are PSD; rounding can leave tiny negative eigenvalues, which have no real root.
    return (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T


def fid_from_statistics(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Fréchet distance between the Gaussians (mu_a, sigma_a) and (mu_b, sigma_b)."""
    mu_a, sigma_a, mu_b, sigma_b = (torch.as_tensor(t).to(torch.float64) for t in (mu_a, sigma_a, mu_b, sigma_b))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape:
        raise ValueError(f"feature statistics of different sizes: {tuple(mu_a.shape)} vs {tuple(mu_b.shape)}.")
    root_a = _psd_sqrt(sigma_a)
    product = root_a @ sigma_b @ root_a
    product = (product + product.T) / 2  # exactly symmetric, as eigvalsh assumes
    trace_sqrt = torch.linalg.eigvalsh(product).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + sigma_a.trace() + sigma_b.trace() - 2 * trace_sqrt
    return float(distance)


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """FID between two sets of features (N, D) and (M, D)."""
    return fid_from_statistics(*statistics(features_a), *statistics(features_b))


def kid(features_a: torch.Tensor, features_b: torch.Tensor, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID: unbiased polynomial-kernel MMD^2, the mean over ``num_subsets`` random equal-size subsets."""
    a = torch.as_tensor(features_a).to(torch.float64)
    b = torch.as_tensor(features_b).to(torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs two feature sets (N, D) of equal D, got {tuple(a.shape)} and {tuple(b.shape)}.")
    dim = a.shape[1]
    m = min(a.shape[0], b.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 features in each set, got {a.shape[0]} and {b.shape[0]}.")
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = a[torch.randperm(a.shape[0], generator=gen)[:m]]
        y = b[torch.randperm(b.shape[0], generator=gen)[:m]]
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        across = (x @ y.T / dim + 1) ** 3
        total += float((within.sum() - within.diagonal().sum()) / (m - 1) - across.sum() * 2 / m)
    return total / num_subsets / m


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = NEIGHBOURS,
                     chunk: int = 1000) -> tuple[float, float]:
    """(precision, recall) of features ``fake`` (M, D) against ``real`` (N, D); ``chunk`` rows of distances at
    a time bound the memory."""
    real, fake = (torch.as_tensor(t).to(torch.float64) for t in (real, fake))
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision and recall need two feature sets (N, D) of equal D, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}.")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision and recall with k = {k} need more than {k} features in each set, got "
                         f"{real.shape[0]} and {fake.shape[0]}.")
    return _share_inside(real, fake, k, chunk), _share_inside(fake, real, k, chunk)


def _share_inside(manifold: torch.Tensor, probes: torch.Tensor, k: int, chunk: int) -> float:
    # The (k+1)-th smallest distance of a point to its own set: the smallest is to itself.
    radii = torch.cat([torch.cdist(manifold[i:i + chunk], manifold).kthvalue(k + 1, dim=1).values
                       for i in range(0, manifold.shape[0], chunk)])
    inside = torch.cat([(torch.cdist(probes[i:i + chunk], manifold) <= radii).any(dim=1)
                        for i in range(0, probes.shape[0], chunk)])
    return float(inside.to(torch.float64).mean())


def overfitting(train_logits: torch.Tensor, heldout_logits: torch.Tensor) -> dict:
    """ADA's overfitting heuristic r_t = E[sign(D(x))] (Karras et al. 2020) of a discriminator's logits on
    training faces and on held-out faces: a D that has memorised its training set calls those real (r_t near 1)
    and the unseen faces of the same distribution less so, so the gap measures memorisation rather than
    D's general confidence. Also the gap of the mean logits."""
    train, heldout = (torch.as_tensor(t).to(torch.float64).flatten() for t in (train_logits, heldout_logits))
    if train.numel() == 0 or heldout.numel() == 0:
        raise ValueError(f"r_t needs logits of at least one face on each side, got {train.numel()} and "
                         f"{heldout.numel()}.")
    rt_train, rt_heldout = float(train.sign().mean()), float(heldout.sign().mean())
    return {"rt_train": rt_train, "rt_heldout": rt_heldout, "rt_gap": rt_train - rt_heldout,
            "logit_gap": float(train.mean() - heldout.mean()), "num_train": train.numel(),
            "num_heldout": heldout.numel()}
