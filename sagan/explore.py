"""The compute behind the app: faces, grids, latent walks and attention overlays, as uint8 arrays.

- ``check_seed`` / ``truncation_threshold`` / ``check_query``: validate what a user typed or an API
  client sent (text, null, true, NaN, inf, huge numbers included), raising ValueError with a
  message that names the fix (the app shows it as it is); no other exception escapes for bad input.
- ``render(g, z)``: one face and, from forward hooks on the same generator, its attention matrices.
- ``interpolation_latents``: latents between two seeds, spherical or linear.
- ``upscale`` / ``tile`` / ``save_gif``: crisp nearest-neighbour images, grids and strips, a GIF.
- ``query_index``: a native pixel (the app maps a click on the upscaled face to one in the browser)
  -> the row of one layer's attention matrix (queries are row-major over that layer's feature map).
- ``attention_overlay``: that row as a heatmap over the face, the clicked point and query cell marked.
- ``Explorer``: one loaded generator, a lock and an LRU cache bounded in bytes of faces with their
  attention matrices, grids and interpolated faces, so a slider move costs one forward pass and a
  click none.
"""
from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from .attention import AttentionMap, capture_attention
from .networks import Generator
from .sampling import MAX_SEED, generate, latent, latents, lerp, slerp, to_uint8

TRUNCATION_MIN = 0.2
TRUNCATION_OFF = 3.0          # the slider's top: no truncation at all
MAX_GRID = 64
MAX_FRAMES = 32
UPSCALE = 8                   # 64 px faces are shown at 512 px
# Narrowest on-screen width of a map whose marks stay whole: a page shrinks a 512 px map to about 280 px on
# a laptop, and a 1 px outline then lost whole sides to the browser's nearest-neighbour scaling.
MAP_MIN_SHOWN = 192
METHODS = ("spherical", "linear")

# Anchors of a perceptually ordered dark-to-bright map (close to matplotlib's "inferno").
_ANCHORS = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                     (245, 125, 21), (250, 193, 39), (252, 255, 164)], dtype=np.float64)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
                     for c in range(3)], axis=1).round().astype(np.uint8)


def is_number(value) -> bool:
    """Whether ``value`` is a finite real number. True/False are not: JSON ``true`` would pass as 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    # Every int is finite, and math.isfinite would overflow converting a huge one to float.
    return isinstance(value, numbers.Integral) or math.isfinite(value)


def _got(value) -> str:
    """The end of a refusal: what was given, or that nothing was (an emptied box in the app)."""
    return "but it is empty" if value is None or (isinstance(value, str) and not value) else f"got {value!r}"


def _is_whole(value, low: int, high: int) -> bool:
    """Whether ``value`` is a finite whole number in [low, high] (a float such as 3.0 counts)."""
    return is_number(value) and low <= value <= high and value == int(value)


def check_seed(seed: float) -> int:
    if not _is_whole(seed, 0, MAX_SEED):
        raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, {_got(seed)}.")
    return int(seed)


def truncation_threshold(truncation: float) -> float | None:
    """The slider value as a threshold for ``sampling.latent``; its top value means no truncation."""
    if not is_number(truncation) or not TRUNCATION_MIN <= truncation <= TRUNCATION_OFF:
        raise ValueError(f"truncation must be between {TRUNCATION_MIN} and {TRUNCATION_OFF} "
                         f"({TRUNCATION_OFF} = off), {_got(truncation)}.")
    return None if truncation >= TRUNCATION_OFF else float(truncation)


def check_query(x: float, y: float, image_size: int) -> tuple[int, int]:
    for name, v in (("x", x), ("y", y)):
        if not _is_whole(v, 0, image_size - 1):
            raise ValueError(f"{name} must be a pixel coordinate of the {image_size}x{image_size} face, "
                             f"a whole number from 0 to {image_size - 1}, {_got(v)}.")
    return int(x), int(y)


@dataclass
class Render:
    face: np.ndarray                  # (S, S, 3) uint8
    attn_maps: list[AttentionMap]     # one per attention layer, weights (N, M) for this face


@torch.inference_mode()
def render(g: Generator, z: torch.Tensor) -> Render:
    """One face from one latent (z_dim,), with the attention matrices of that same forward pass."""
    with capture_attention(g) as attn_maps:
        images = g(z.unsqueeze(0).to(next(g.parameters()).device))
    for m in attn_maps:
        m.weights = m.weights[0]
    return Render(to_uint8(images)[0], attn_maps)


def interpolation_latents(z_a: torch.Tensor, z_b: torch.Tensor, ts, method: str = "spherical") -> torch.Tensor:
    """(len(ts), z_dim) latents from z_a (t=0) to z_b (t=1)."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"interpolation must be one of {', '.join(METHODS)}, {_got(method)}.")
    mix = slerp if method == "spherical" else lerp
    return torch.stack([mix(z_a, z_b, float(t)) for t in ts])


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (..., H, W, C) to (..., H*factor, W*factor, C): pixels stay sharp squares."""
    return images.repeat(factor, axis=-3).repeat(factor, axis=-2)


def tile(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """(B, H, W, 3) images on a white sheet, row by row, ``columns`` wide (default: as square as it gets)."""
    b, h, w, _ = images.shape
    columns = columns or math.ceil(math.sqrt(b))
    rows = -(-b // columns)
    sheet = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img
    return sheet


def save_gif(frames: np.ndarray, path: str, frame_ms: int = 80) -> None:
    """A looping GIF that walks forward through ``frames`` (B, H, W, 3) and back."""
    order = list(frames) + list(frames[-2:0:-1])
    images = [Image.fromarray(f) for f in order]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)


def query_index(x: int, y: int, image_size: int, resolution: int) -> int:
    """Row of a ``resolution``-square layer's attention matrix whose query covers native pixel (x, y)."""
    return (y * resolution // image_size) * resolution + x * resolution // image_size


def attention_overlay(face: np.ndarray, attn_map: AttentionMap, x: int, y: int, scale: int = UPSCALE,
                      alpha: float = 0.6) -> np.ndarray:
    """Where the query at native pixel (x, y) attends in one layer, over the face enlarged ``scale`` times.

    The row is divided by its maximum, so the brightest key is the most attended one in this layer.
    The face lies under the heat in grey, so its own colours don't read as attention.
    """
    size, resolution = face.shape[0], attn_map.resolution
    query = query_index(x, y, size, resolution)
    row = attn_map.weights[query].numpy()
    key_rows, key_cols = attn_map.key_grid
    heat = row.reshape(key_rows, key_cols) / max(float(row.max()), 1e-12)
    colors = COLORMAP[np.round(heat * 255).astype(np.uint8)]
    display = size * scale
    colors = upscale(colors, display // key_rows)
    grey = upscale(face, scale).astype(np.float32) @ np.array([[0.299] * 3, [0.587] * 3, [0.114] * 3], np.float32)
    blended = (1 - alpha) * grey + alpha * colors.astype(np.float32)
    image = Image.fromarray(blended.round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cell = display // resolution
    cy, cx = (cell * i for i in divmod(query, resolution))
    draw.rectangle((cx, cy, cx + cell - 1, cy + cell - 1), outline=(255, 255, 255),
                   width=math.ceil(display / MAP_MIN_SHOWN))
    px, py = x * scale + scale // 2, y * scale + scale // 2
    draw.ellipse((px - 7, py - 7, px + 7, py + 7), outline=(0, 0, 0), width=2)
    draw.ellipse((px - 5, py - 5, px + 5, py + 5), outline=(255, 255, 255), width=2)
    return np.asarray(image)


def describe_layer(attn_map: AttentionMap, x: int, y: int, image_size: int) -> str:
    """A caption: the layer's grids, its learned gamma, and how peaked this query's attention is."""
    row = attn_map.weights[query_index(x, y, image_size, attn_map.resolution)]
    key_rows, key_cols = attn_map.key_grid
    # Short enough to fit under a map a third of a laptop screen wide; the app's help spells it out.
    return (f"{attn_map.resolution}x{attn_map.resolution}, keys {key_rows}x{key_cols} · "
            f"γ {attn_map.gamma:+.2f} · peak {float(row.max()) * row.numel():.0f}x")


def nbytes(value: Render | np.ndarray) -> int:
    """Memory a cached render (its face and attention matrices) or image array holds."""
    if isinstance(value, Render):
        return value.face.nbytes + sum(m.weights.numel() * m.weights.element_size() for m in value.attn_maps)
    return value.nbytes


class Explorer:
    """A generator loaded once, with an LRU cache of what it rendered bounded in bytes, not entries: a
    128x128 face's attention matrices take 16 times the memory of a 64x64 one's.

    Every forward pass runs under one lock: ``capture_attention`` hooks the shared model, so two
    passes at once would record into each other's lists. Grids and walks run one face per forward
    pass, like a single face: batched convolutions round differently, and a seed's face must be
    the same pixels wherever it appears.
    """

    def __init__(self, g: Generator, cache_bytes: int = 256 * 2 ** 20):
        self.g = g.eval()
        self.image_size = g.cfg.image_size
        self.z_dim = g.cfg.z_dim
        self._lock = threading.Lock()
        self._cache: OrderedDict = OrderedDict()
        self._cache_bytes, self._cached_bytes = cache_bytes, 0

    def _cached(self, key, compute):
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            value = compute()
            self._cache[key] = value
            self._cached_bytes += nbytes(value)
            while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:  # the newest always stays
                self._cached_bytes -= nbytes(self._cache.popitem(last=False)[1])
            return value

    def face(self, seed: float, truncation: float) -> Render:
        seed, threshold = check_seed(seed), truncation_threshold(truncation)
        return self._cached(("face", seed, threshold),
                            lambda: render(self.g, latent(seed, self.z_dim, threshold)))

    def attention(self, seed: float, truncation: float, x: float, y: float) -> list[tuple[np.ndarray, str]]:
        """(overlay, caption) per attention layer for the query at native pixel (x, y)."""
        x, y = check_query(x, y, self.image_size)
        result = self.face(seed, truncation)
        return [(attention_overlay(result.face, m, x, y), describe_layer(m, x, y, self.image_size))
                for m in result.attn_maps]

    def grid(self, seed: float, count: int, truncation: float) -> np.ndarray:
        """Faces of seeds seed, seed+1, ... (wrapping past MAX_SEED), (count, S, S, 3)."""
        seed, threshold = check_seed(seed), truncation_threshold(truncation)
        if not _is_whole(count, 1, MAX_GRID):
            raise ValueError(f"a grid holds a whole number of 1 to {MAX_GRID} faces, {_got(count)}.")
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(int(count))]
        return self._cached(("grid", seed, int(count), threshold),
                            lambda: generate(self.g, latents(seeds, self.z_dim, threshold), batch_size=1))

    def _pair(self, seed_a: float, seed_b: float, truncation: float):
        threshold = truncation_threshold(truncation)
        return (latent(check_seed(seed_a), self.z_dim, threshold),
                latent(check_seed(seed_b), self.z_dim, threshold))

    def interpolate(self, seed_a: float, seed_b: float, t: float, truncation: float,
                    method: str = "spherical") -> np.ndarray:
        """The (S, S, 3) face at t in [0, 1] on the way from seed_a to seed_b."""
        if not is_number(t) or not 0 <= t <= 1:
            raise ValueError(f"t must be between 0 (seed A) and 1 (seed B), {_got(t)}.")
        z_a, z_b = self._pair(seed_a, seed_b, truncation)
        z = interpolation_latents(z_a, z_b, [t], method)[0]
        key = ("mix", int(seed_a), int(seed_b), float(t), truncation_threshold(truncation), method)
        return self._cached(key, lambda: render(self.g, z).face)

    def walk(self, seed_a: float, seed_b: float, frames: int, truncation: float,
             method: str = "spherical") -> np.ndarray:
        """``frames`` evenly spaced faces from seed_a to seed_b inclusive, (frames, S, S, 3)."""
        if not _is_whole(frames, 2, MAX_FRAMES):
            raise ValueError(f"a walk needs a whole number of 2 to {MAX_FRAMES} frames, {_got(frames)}.")
        z_a, z_b = self._pair(seed_a, seed_b, truncation)
        z = interpolation_latents(z_a, z_b, np.linspace(0, 1, int(frames)), method)
        with self._lock:
            return generate(self.g, z, batch_size=1)
