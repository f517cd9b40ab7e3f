"""Edits of a face: a seed's latent moved along semantic directions and by small random steps.

An edit is plain numbers, so any edited face can be made again from them (the app shows the API call):
the seed, the truncation, the nearby steps taken ("seed:radius, ..."), and one amount per direction:

    z = latent(seed, truncation) + sum_k radius_k * random_step(seed_k) + sum_i amount_i * direction_i

The edit applies after truncation: truncation picks the face, the edit moves it. An edit of nothing is
then exactly the seed's latent, and an amount is the same move at any truncation. Directions are unit
vectors and z's entries have standard deviation 1, so an amount is in standard deviations of the latent
along its direction. A random step's entries have standard deviation 1 too: radius 1 moves the face
about as far along each direction as amount 1 does.

- ``check_amount`` / ``check_direction`` / ``check_radius`` / ``parse_steps``: validate what a user or an
  API client sent, raising ValueError with a message that names the fix.
- ``random_step(seed, z_dim)``: the random step of a seed, distinct from that seed's own latent.
- ``edited_latent``: the formula above.
- ``Editor``: edits of an Explorer's generator (faces, their attention maps, a direction x step grid, a walk
  along one direction, nearby faces), rendered one face per forward pass and cached like its faces. It
  finds the directions when it is made, that is when the app loads a checkpoint: one small eigen-
  decomposition, nothing stored.
"""
from __future__ import annotations

import numpy as np
import torch

from .directions import generator_directions
from .explore import (MAX_FRAMES, Explorer, Render, check_query, check_seed, got, is_number, is_whole,
                      layer_strip, render, truncation_threshold)
from .sampling import MAX_SEED, generate, latent

# The sliders' range, in standard deviations of the latent: bench/directions.py found the bundled generator's
# faces edited by ±3 along each top direction as often inside the real faces' k-NN balls as unedited ones,
# and at ±4.5 the top two directions' far less often (the README's table).
MAX_AMOUNT = 3.0
EDIT_DIRECTIONS = 8           # sliders: the top directions, by eigenvalue
GRID_AMOUNTS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)   # the direction x step grid's columns
MAX_RADIUS = 1.0              # the nearby faces' radius slider's top
MAX_STEPS = 32                # nearby steps an edit may hold
VARIATIONS = 8                # nearby faces shown at once


def check_amount(amount, name: str = "amount") -> float:
    if not is_number(amount) or not -MAX_AMOUNT <= amount <= MAX_AMOUNT:
        raise ValueError(f"{name} must be a number from {-MAX_AMOUNT:g} to {MAX_AMOUNT:g} (standard deviations of "
                         f"the latent), {got(amount)}.")
    return float(amount)


def check_direction(direction, count: int) -> int:
    """A 1-based direction number (the app's and the API's) as a 0-based index."""
    if not is_whole(direction, 1, count):
        raise ValueError(f"direction must be a whole number from 1 to {count}, {got(direction)}.")
    return int(direction) - 1


def check_radius(radius) -> float:
    if not is_number(radius) or not 0 < radius <= MAX_RADIUS:
        raise ValueError(f"radius must be a number above 0 and at most {MAX_RADIUS:g}, {got(radius)}.")
    return float(radius)


def parse_steps(text) -> tuple[tuple[int, float], ...]:
    """"seed:radius, seed:radius" (or empty) -> ((seed, radius), ...)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return ()
    how = ('steps must be nearby steps written "seed:radius", separated by commas (e.g. "12:0.5, 7:0.25"), '
           f'at most {MAX_STEPS}, or nothing')
    if not isinstance(text, str):
        raise ValueError(f"{how}, {got(text)}.")
    items = [item.strip() for item in text.split(",")]
    if len(items) > MAX_STEPS:
        raise ValueError(f"{how}; got {len(items)} steps.")
    steps = []
    for item in items:
        seed, colon, radius = item.partition(":")
        try:
            if not colon:
                raise ValueError
            seed, radius = int(seed.strip()), float(radius.strip())
        except ValueError:
            raise ValueError(f"{how}; {item!r} is not.") from None
        steps.append((check_seed(seed), check_radius(radius)))
    return tuple(steps)


def format_steps(steps) -> str:
    return ", ".join(f"{seed}:{radius:g}" for seed, radius in steps)


def random_step(seed: int, z_dim: int) -> torch.Tensor:
    """A standard normal vector (z_dim,) of ``seed``: the second draw of its stream, so not the seed's latent."""
    return torch.randn(2, z_dim, generator=torch.Generator().manual_seed(int(seed)))[1]


def edited_latent(z: torch.Tensor, directions: torch.Tensor, amounts, steps=()) -> torch.Tensor:
    """``z`` moved by ``amounts`` (one per row of ``directions``) and by the random ``steps`` ((seed, radius), ...)."""
    z = z.clone()
    for seed, radius in steps:
        z += radius * random_step(seed, z.shape[0])
    for amount, direction in zip(amounts, directions):
        if amount:
            z += amount * direction
    return z


class Editor:
    """Edited faces of ``explorer``'s generator, its top ``EDIT_DIRECTIONS`` directions (fewer for a shorter latent)."""

    def __init__(self, explorer: Explorer):
        self.explorer = explorer
        self.eigenvalues, self.directions = generator_directions(explorer.g, min(EDIT_DIRECTIONS, explorer.z_dim))

    @property
    def count(self) -> int:
        return self.directions.shape[0]

    def _checked(self, seed, truncation, steps, amounts):
        """(seed, threshold, steps, amounts) as cache keys, or a ValueError naming the bad input."""
        if len(amounts) != self.count:
            raise ValueError(f"an edit takes {self.count} amounts, one per direction, got {len(amounts)}.")
        amounts = tuple(check_amount(a, f"amount_{i + 1}") for i, a in enumerate(amounts))
        return check_seed(seed), truncation_threshold(truncation), parse_steps(steps), amounts

    def _latent(self, seed, threshold, steps, amounts) -> torch.Tensor:
        return edited_latent(latent(seed, self.explorer.z_dim, threshold), self.directions, amounts, steps)

    def face(self, seed, truncation, steps, amounts) -> Render:
        """The edited face and its attention matrices; with no edit, the explorer's own face of the seed."""
        seed, threshold, steps, amounts = self._checked(seed, truncation, steps, amounts)
        if not steps and not any(amounts):  # the very render /generate shows, from the same cache
            return self.explorer.face(seed, truncation)
        return self.explorer._cached(("edit", seed, threshold, steps, amounts),
                                     lambda: render(self.explorer.g, self._latent(seed, threshold, steps, amounts)))

    def one(self, seed, truncation, direction, amount) -> Render:
        """The face of ``seed`` moved ``amount`` along one direction (numbered from 1)."""
        amounts = [0.0] * self.count
        amounts[check_direction(direction, self.count)] = check_amount(amount)
        return self.face(seed, truncation, "", amounts)

    def attention(self, seed, truncation, steps, amounts, x, y) -> list[tuple[np.ndarray, str]]:
        """(``explore.layer_strip``, caption) per attention layer of the edited face, for the query at native
        pixel (x, y): the same three views as the first tab's."""
        x, y = check_query(x, y, self.explorer.image_size)
        result, figures = self.face(seed, truncation, steps, amounts), self.explorer.figures()
        return [layer_strip(result.face, m, x, y, figures[m.name]) for m in result.attn_maps]

    def _faces(self, key, latents: list[torch.Tensor]) -> np.ndarray:
        # One face per forward pass, as the explorer's grids: a face is the same pixels wherever it appears.
        return self.explorer._cached(key, lambda: generate(self.explorer.g, torch.stack(latents), batch_size=1))

    def grid(self, seed, truncation, steps, amounts) -> np.ndarray:
        """(count * len(GRID_AMOUNTS), S, S, 3): row i is the edit with direction i's amount set to each of
        GRID_AMOUNTS in turn, the other amounts kept."""
        seed, threshold, steps, amounts = self._checked(seed, truncation, steps, amounts)
        rows = [[*amounts[:i], column, *amounts[i + 1:]] for i in range(self.count) for column in GRID_AMOUNTS]
        return self._faces(("edit-grid", seed, threshold, steps, amounts),
                           [self._latent(seed, threshold, steps, row) for row in rows])

    def walk(self, seed, truncation, steps, amounts, direction, frames) -> np.ndarray:
        """``frames`` faces of the edit with one direction's amount going from -MAX_AMOUNT to MAX_AMOUNT."""
        seed, threshold, steps, amounts = self._checked(seed, truncation, steps, amounts)
        i = check_direction(direction, self.count)
        if not is_whole(frames, 2, MAX_FRAMES):
            raise ValueError(f"a walk needs a whole number of 2 to {MAX_FRAMES} frames, {got(frames)}.")
        rows = [[*amounts[:i], float(a), *amounts[i + 1:]] for a in np.linspace(-MAX_AMOUNT, MAX_AMOUNT, int(frames))]
        return self._faces(("edit-walk", seed, threshold, steps, amounts, i, int(frames)),
                           [self._latent(seed, threshold, steps, row) for row in rows])

    def variations(self, seed, truncation, steps, amounts, radius, first_seed) -> np.ndarray:
        """(VARIATIONS, S, S, 3): the edit plus a random step of ``radius`` from each of the step seeds
        first_seed, first_seed + 1, ... (wrapping past the largest seed)."""
        seed, threshold, steps, amounts = self._checked(seed, truncation, steps, amounts)
        radius, first_seed = check_radius(radius), check_seed(first_seed)
        return self._faces(("nearby", seed, threshold, steps, amounts, radius, first_seed),
                           [self._latent(seed, threshold, steps + (step,), amounts)
                            for step in variation_steps(first_seed, radius)])


def variation_steps(first_seed: int, radius: float) -> list[tuple[int, float]]:
    """The (seed, radius) step of each nearby face, in the order they are shown."""
    return [((first_seed + j) % (MAX_SEED + 1), radius) for j in range(VARIATIONS)]
