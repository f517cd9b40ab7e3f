"""How much a layer's attention depends on the query: pure functions of attention matrices.

Each takes one layer's weights, (B, N, M) or with heads (B, H, N, M): B faces, N query positions
on a (h, w) grid, M key positions on a (kh, kw) grid, rows summing to 1. Heads are measured one by
one (a head's own map is what a pixel attends with) and averaged over faces, so each returns one
value per head, shape (H,) (H = 1 without heads).

- ``mutual_information``: I(Q;K) = H(mean row) - mean H(row) in bits, with the query uniform over
  the N positions of one face (Jensen-Shannon divergence of the rows). 0 when every position
  attends alike; at most log2 min(N, M).
- ``row_entropy``: mean H(row) in bits; log2 M for uniform rows.
- ``pairwise_distance``: GCNet's measure (Cao et al. 2019), the mean cosine distance between the
  rows of two different queries.
- ``mean_distance``: ViT's mean attention distance (Dosovitskiy et al. 2020), the attention-weighted
  distance between the centres of the query and key cells, in pixels of the image.

``generator_report`` applies them to a generator's faces of seeds 0..N-1, as evaluation and the app do;
for a layer with a relative position bias it adds the MI and the distance with the bias switched off
(``mi_bits_no_pos``, ``mean_distance_px_no_pos``): bits a purely local bias makes are no sign that the
content of a face steers the maps.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .attention import SelfAttention, capture_attention, positional_bias_off
from .sampling import latents

FACES = 64   # the faces (seeds 0..63) a generator's attention is measured over

_TINY = 1e-12  # 0 log 0 = 0


def _heads(weights: torch.Tensor) -> torch.Tensor:
    if weights.dim() == 3:
        weights = weights.unsqueeze(1)
    if weights.dim() != 4:
        raise ValueError(f"attention weights must be (B, N, M) or (B, H, N, M), not {tuple(weights.shape)}.")
    return weights.double()


def _entropy_bits(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log2(p.clamp_min(_TINY))).sum(-1)


def row_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy of a row, in bits, per head."""
    return _entropy_bits(_heads(weights)).mean(dim=(0, 2))


def mutual_information(weights: torch.Tensor) -> torch.Tensor:
    """I(Q;K) in bits per head: entropy of a face's mean row minus its rows' mean entropy."""
    w = _heads(weights)
    return (_entropy_bits(w.mean(2)) - _entropy_bits(w).mean(2)).mean(0)


def pairwise_distance(weights: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance between the rows of two different queries of a face, per head."""
    w = _heads(weights)
    n = w.shape[2]
    if n < 2:
        raise ValueError("the pairwise distance needs at least two queries.")
    unit = w / w.norm(dim=-1, keepdim=True).clamp_min(_TINY)
    total = unit.sum(2).pow(2).sum(-1)                     # sum over all (i, j) of cos, i = j included
    mean_cos = (total - unit.pow(2).sum((-1, -2))) / (n * (n - 1))
    return (1 - mean_cos).mean(0)


def cell_centres(grid: tuple[int, int], image_size: int) -> torch.Tensor:
    """(rows * cols, 2) centres (y, x) of a grid's cells, row-major, in pixels of the image."""
    rows, cols = grid
    ys = (torch.arange(rows, dtype=torch.float64) + 0.5) * image_size / rows
    xs = (torch.arange(cols, dtype=torch.float64) + 0.5) * image_size / cols
    return torch.cartesian_prod(ys, xs)


def mean_distance(weights: torch.Tensor, query_grid: tuple[int, int], key_grid: tuple[int, int],
                  image_size: int) -> torch.Tensor:
    """Attention-weighted distance from query to key, in pixels of the image, per head."""
    w = _heads(weights)
    if w.shape[2] != query_grid[0] * query_grid[1] or w.shape[3] != key_grid[0] * key_grid[1]:
        raise ValueError(f"weights {tuple(w.shape)} do not match a {query_grid} query grid and a {key_grid} "
                         "key grid.")
    dist = torch.cdist(cell_centres(query_grid, image_size), cell_centres(key_grid, image_size))
    return (w * dist).sum(-1).mean(dim=(0, 2))


def _per_head(weights: torch.Tensor, query_grid: tuple[int, int], key_grid: tuple[int, int],
              image_size: int) -> dict[str, torch.Tensor]:
    return {
        "mi_bits": mutual_information(weights),
        "row_entropy_bits": row_entropy(weights),
        "pairwise_distance": pairwise_distance(weights),
        "mean_distance_px": mean_distance(weights, query_grid, key_grid, image_size),
    }


def _summary(per_head: dict[str, torch.Tensor], num_keys: int) -> dict:
    report = {name: float(values.mean()) for name, values in per_head.items()}
    report["mi_normalised"] = report["mi_bits"] / math.log2(num_keys)
    if len(per_head["mi_bits"]) > 1:
        report["heads"] = [{name: float(values[h]) for name, values in per_head.items()}
                           for h in range(len(per_head["mi_bits"]))]
    return report


def layer_report(weights: torch.Tensor, query_grid: tuple[int, int], key_grid: tuple[int, int],
                 image_size: int) -> dict:
    """Every measure of one layer, averaged over heads, with each head's own values when it has several."""
    return _summary(_per_head(weights, query_grid, key_grid, image_size), weights.shape[-1])


def generator_report(g: nn.Module, num_faces: int = FACES, batch_size: int = 64) -> dict[str, dict]:
    """``layer_report`` of each attention layer of ``g`` (in eval mode) over the faces of seeds 0..num_faces-1."""
    report = _report(g, num_faces, batch_size)
    biased = [name for name, m in g.named_modules() if isinstance(m, SelfAttention) and m.use_rel_pos]
    if biased:
        with positional_bias_off(g):
            content = _report(g, num_faces, batch_size)
        for name in biased:
            report[name]["mi_bits_no_pos"] = content[name]["mi_bits"]
            report[name]["mean_distance_px_no_pos"] = content[name]["mean_distance_px"]
    return report


def report_scalars(report: dict[str, dict]) -> dict[str, float]:
    """A ``generator_report`` as flat scalars for TensorBoard: ``attention/<layer>/<measure>``."""
    return {f"attention/{layer}/{name}": value for layer, measures in report.items()
            for name, value in measures.items() if name != "heads"}


def report_lines(report: dict[str, dict]) -> list[str]:
    """A ``generator_report`` in words, one line per layer."""
    lines = []
    for layer, m in report.items():
        line = (f"{layer}: I(Q;K) {m['mi_bits']:.2f} bits ({m['mi_normalised']:.2f} of the most), row entropy "
                f"{m['row_entropy_bits']:.2f} bits, pairwise distance {m['pairwise_distance']:.3f}, mean distance "
                f"{m['mean_distance_px']:.1f} px")
        if "mi_bits_no_pos" in m:
            line += (f"; position bias off: {m['mi_bits_no_pos']:.2f} bits, {m['mean_distance_px_no_pos']:.1f} px")
        lines.append(line)
    return lines


@torch.inference_mode()
def _report(g: nn.Module, num_faces: int, batch_size: int) -> dict[str, dict]:
    # Every measure is a mean over faces, so batches' means weighted by their size give the whole set's, and
    # only one batch's matrices are ever held (all 64 faces' would take gigabytes at 128 px).
    device = next(g.parameters()).device
    z = latents(range(num_faces), g.cfg.z_dim)
    sums: dict[str, dict[str, torch.Tensor]] = {}
    num_keys: dict[str, int] = {}
    with capture_attention(g) as maps:
        for i in range(0, num_faces, batch_size):
            g(z[i:i + batch_size].to(device))
            for m in maps:
                faces = m.weights.shape[0]
                measures = _per_head(m.weights, (m.resolution,) * 2, m.key_grid, g.cfg.image_size)
                total = sums.setdefault(m.name, {name: 0 for name in measures})
                for name, values in measures.items():
                    total[name] = total[name] + values * faces
                num_keys[m.name] = m.weights.shape[-1]
            maps.clear()
    return {name: _summary({k: v / num_faces for k, v in total.items()}, num_keys[name])
            for name, total in sums.items()}
