"""FID, KID, precision and recall as pure functions of features (sagan/metrics.py), checked against closed forms
and scipy."""
import numpy as np
import pytest
import torch

from sagan import metrics


def tiny_extractor(dim: int = 16):
    """A randomly initialised stand-in for Inception: pooled pixels through a fixed random projection."""
    projection = torch.randn(3 * 4 * 4, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def extract(images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.to(torch.float64) / 255 - 0.5, 4)
        # Block means of random pixels vary little; scaled up, a brightness shift is clearly visible.
        return torch.tanh(8 * pooled.flatten(1) @ projection / 7).float()
    return extract


def random_images(count: int, seed: int, size: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=gen)


def brighten(images: torch.Tensor, amount: int) -> torch.Tensor:
    return (images.int() + amount).clamp(0, 255).to(torch.uint8)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    extract = tiny_extractor()
    images = random_images(200, seed=1)
    features = extract(images)
    assert metrics.fid(features, features) == pytest.approx(0.0, abs=1e-6)
    distances = [metrics.fid(features, extract(brighten(images, shift))) for shift in (8, 32, 96)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_fid_between_two_samples_of_one_distribution_is_small():
    extract = tiny_extractor()
    same = metrics.fid(extract(random_images(300, seed=1)), extract(random_images(300, seed=2)))
    shifted = metrics.fid(extract(random_images(300, seed=1)), extract(brighten(random_images(300, seed=2), 64)))
    assert same < shifted / 20


def test_fid_matches_the_closed_form_for_diagonal_gaussians():
    # Diagonal covariances commute: tr((S_a S_b)^1/2) = sum sqrt(a_i b_i).
    mu_a, mu_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = (mu_a - mu_b).square().sum() + (var_a + var_b - 2 * (var_a * var_b).sqrt()).sum()
    got = metrics.fid_from_statistics(mu_a, torch.diag(var_a), mu_b, torch.diag(var_b))
    assert got == pytest.approx(float(expected), rel=1e-10)


def test_fid_matches_scipy_sqrtm():
    import scipy.linalg as scipy_linalg
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 24)) @ rng.standard_normal((24, 24))
    b = rng.standard_normal((250, 24)) * 1.5 + 0.3
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy_linalg.sqrtm(s_a @ s_b).real
    expected = np.square(a.mean(0) - b.mean(0)).sum() + np.trace(s_a + s_b - 2 * root)
    assert metrics.fid(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-8)


def test_fid_matches_scipy_with_fewer_samples_than_dimensions_as_in_validation():
    """Validation's case: 2,000 faces' 2,048-d Inception features, so both covariances have rank 1,999
    and S_a^1/2 S_b S_a^1/2 has eigenvalues that are zero, which rounding leaves slightly negative: the
    clamp keeps them out of the square roots. The reference needs no eigenvalues: the nonzero
    eigenvalues of S_a S_b are the squared singular values of the centred cross-Gram matrix
    A B^T / sqrt((n-1)(m-1)), so tr((S_a S_b)^1/2) is the sum of its singular values (scipy's svdvals).
    Without either clamp the test fails: the negative eigenvalues' roots are NaN."""
    import scipy.linalg as scipy_linalg
    rng = np.random.default_rng(0)
    n, dim = 2000, 2048
    a = np.abs(rng.standard_normal((n, dim))) * rng.uniform(0.1, 2, dim)  # non-negative, as pooled ReLUs are
    b = np.abs(rng.standard_normal((n, dim))) * rng.uniform(0.1, 2, dim) + 0.05
    mu_a, sigma_a = metrics.statistics(torch.from_numpy(a))
    mu_b, sigma_b = metrics.statistics(torch.from_numpy(b))
    assert torch.linalg.eigvalsh(sigma_a).min() < 0  # the case the clamps are for
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    trace_sqrt = scipy_linalg.svdvals(centred_a @ centred_b.T).sum() / (n - 1)  # (n-1)(m-1), m = n
    variances = np.square(centred_a).sum() / (n - 1) + np.square(centred_b).sum() / (n - 1)
    expected = np.square(a.mean(0) - b.mean(0)).sum() + variances - 2 * trace_sqrt
    assert metrics.fid_from_statistics(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(expected, rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    extract = tiny_extractor()
    images = random_images(200, seed=1)
    features = extract(images)
    itself = metrics.kid(features, features, num_subsets=20, max_subset_size=100)
    other_sample = metrics.kid(features, extract(random_images(200, seed=2)), num_subsets=20, max_subset_size=100)
    shifts = [metrics.kid(features, extract(brighten(images, s)), num_subsets=20, max_subset_size=100)
              for s in (16, 64)]
    assert abs(itself) < shifts[0] / 20 and abs(other_sample) < shifts[0] / 5
    assert shifts[0] < shifts[1]


def test_kid_with_whole_sets_is_the_unbiased_mmd():
    a, b = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, 5, dtype=torch.float64) + 0.5
    k = lambda x, y: (x @ y.T / 5 + 1) ** 3  # noqa: E731
    m = 30
    off_diagonal = lambda kxx: (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))  # noqa: E731
    expected = off_diagonal(k(a, a)) + off_diagonal(k(b, b)) - 2 * k(a, b).mean()
    assert metrics.kid(a, b, num_subsets=3, max_subset_size=m) == pytest.approx(float(expected), rel=1e-10)


def test_metrics_refuse_mismatched_features():
    with pytest.raises(ValueError, match="equal D"):
        metrics.kid(torch.randn(10, 4), torch.randn(10, 5))
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.statistics(torch.randn(1, 4))


def test_precision_and_recall_count_points_inside_the_other_sets_k_nearest_neighbour_balls():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # with k=1 each real point's ball has radius 1
    fake = torch.tensor([[0.5], [10.0]])  # each fake's ball reaches the other fake: radius 9.5
    assert metrics.precision_recall(real, fake, k=1) == (0.5, 1.0)
    assert metrics.precision_recall(fake, real, k=1) == (1.0, 0.5)  # the roles swap


def test_precision_and_recall_tell_realism_from_coverage():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=gen, dtype=torch.float64)
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    collapsed = 0.3 * torch.randn(400, 8, generator=gen, dtype=torch.float64)  # typical faces, little variety
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2
    shifted = torch.randn(400, 8, generator=gen, dtype=torch.float64) + 5  # unlike any real one
    assert metrics.precision_recall(real, shifted) == (0.0, 0.0)
    assert metrics.precision_recall(real, collapsed, chunk=7) == (precision, recall)  # chunks change nothing


def test_precision_and_recall_refuse_sets_too_small_for_k():
    with pytest.raises(ValueError, match="more than 3 features in each set, got 5 and 3"):
        metrics.precision_recall(torch.zeros(5, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="equal D"):
        metrics.precision_recall(torch.zeros(5, 2), torch.zeros(5, 3))


def test_overfitting_is_the_mean_sign_on_each_side_and_their_gap():
    result = metrics.overfitting(torch.tensor([2.0, 0.5, -1.0, 3.0]), torch.tensor([[-0.5], [1.0]]))
    assert (result["rt_train"], result["rt_heldout"]) == (0.5, 0.0)
    assert result["rt_gap"] == 0.5 and result["logit_gap"] == pytest.approx(1.125 - 0.25)
    assert (result["num_train"], result["num_heldout"]) == (4, 2)
    with pytest.raises(ValueError, match="r_t needs logits of at least one face on each side, got 0 and 2"):
        metrics.overfitting(torch.tensor([]), torch.tensor([1.0, 2.0]))
