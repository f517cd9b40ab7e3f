"""The compute behind the app: faces, grids, latent walks and attention overlays, as uint8 arrays.

- ``check_seed`` / ``truncation_threshold`` / ``check_query``: validate what a user typed or an API
  client sent (text, null, true, NaN, inf, huge numbers included), raising ValueError with a
  message that names the fix (the app shows it as it is); no other exception escapes for bad input.
- ``render(g, z)``: one face and, from forward hooks on the same generator, its attention matrices.
- ``interpolation_latents``: latents between two seeds, spherical or linear.
- ``upscale`` / ``tile`` / ``save_gif``: crisp nearest-neighbour images, grids and strips, a GIF.
- ``query_index``: a native pixel (the app maps a click on the upscaled face to one in the browser)
  -> the row of one layer's attention matrix (queries are row-major over that layer's feature map).
- ``layer_views``: three images of one layer over the face: the row as a heatmap
  (``attention_overlay``), the row against the layer's mean row (``contrast_overlay``, a log ratio on a
  centred scale) and the mean row itself (``mean_overlay``); the first two mark the clicked point and
  query cell. With several heads, each shows the mean of the heads' rows (``head_mean``).
  ``layer_strip``: the three side by side in one image, with the layer's caption.
- ``describe_dependence``: a layer's I(Q;K) over the faces of seeds 0..63, in plain words.
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
from .attention_metrics import FACES, generator_report
from .networks import Generator
from .sampling import MAX_SEED, generate, latent, latents, lerp, slerp, to_uint8

TRUNCATION_MIN = 0.2
TRUNCATION_OFF = 3.0          # the slider's top: no truncation at all
MAX_GRID = 64
MAX_FRAMES = 32
UPSCALE = 8                   # 64 px faces are shown at 512 px
# Side of one view of an attention map, about: shown a third of a laptop's maps column wide, 256 px stay
# crisp, and encode as PNG in a tenth of the time 512 px took (a click makes six views).
MAP_SIZE = 256
STRIP_GAP = 8                 # white pixels between the views of one layer
# Narrowest on-screen width of a map whose marks stay whole: a page shrinks a map to about 200 px on a laptop,
# and a 1 px outline then lost whole sides to the browser's nearest-neighbour scaling.
MAP_MIN_SHOWN = 192
METHODS = ("spherical", "linear")

# Anchors of a perceptually ordered dark-to-bright map (close to matplotlib's "inferno").
_ANCHORS = [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21), (250, 193, 39),
            (252, 255, 164)]


def _colormap(anchors) -> np.ndarray:
    """256 RGB colours interpolated between evenly spaced anchors."""
    anchors = np.array(anchors, dtype=np.float64)
    return np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(anchors)), anchors[:, c])
                     for c in range(3)], axis=1).round().astype(np.uint8)


COLORMAP = _colormap(_ANCHORS)
# Blue (less) through near-white (0) to red (more), as ColorBrewer's RdBu: unlike COLORMAP, centred.
DIVERGING = _colormap([(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
                       (247, 247, 247), (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43),
                       (103, 0, 31)])
CONTRAST_BITS = 3   # the contrast view saturates at 2**3 = 8 times more or less than the average pixel
GREY = np.array([0.299, 0.587, 0.114], np.float32)   # luma weights


def is_number(value) -> bool:
    """Whether ``value`` is a finite real number. True/False are not: JSON ``true`` would pass as 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    # Every int is finite, and math.isfinite would overflow converting a huge one to float.
    return isinstance(value, numbers.Integral) or math.isfinite(value)


def got(value) -> str:
    """The end of a refusal: what was given, or that nothing was (an emptied box in the app)."""
    return "but it is empty" if value is None or (isinstance(value, str) and not value) else f"got {value!r}"


def is_whole(value, low: int, high: int) -> bool:
    """Whether ``value`` is a finite whole number in [low, high] (a float such as 3.0 counts)."""
    return is_number(value) and low <= value <= high and value == int(value)


def check_seed(seed: float) -> int:
    if not is_whole(seed, 0, MAX_SEED):
        raise ValueError(f"seed must be a whole number from 0 to {MAX_SEED}, {got(seed)}.")
    return int(seed)


def truncation_threshold(truncation: float) -> float | None:
    """The slider value as a threshold for ``sampling.latent``; its top value means no truncation."""
    if not is_number(truncation) or not TRUNCATION_MIN <= truncation <= TRUNCATION_OFF:
        raise ValueError(f"truncation must be between {TRUNCATION_MIN} and {TRUNCATION_OFF} "
                         f"({TRUNCATION_OFF} = off), {got(truncation)}.")
    return None if truncation >= TRUNCATION_OFF else float(truncation)


def check_query(x: float, y: float, image_size: int) -> tuple[int, int]:
    for name, v in (("x", x), ("y", y)):
        if not is_whole(v, 0, image_size - 1):
            raise ValueError(f"{name} must be a pixel coordinate of the {image_size}x{image_size} face, "
                             f"a whole number from 0 to {image_size - 1}, {got(v)}.")
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
        raise ValueError(f"interpolation must be one of {', '.join(METHODS)}, {got(method)}.")
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


def map_scale(image_size: int) -> int:
    """How many times a map enlarges the face: to about MAP_SIZE pixels, crisp on screen, quick to encode."""
    return max(1, MAP_SIZE // image_size)


def head_mean(weights: torch.Tensor) -> torch.Tensor:
    """One face's (N, M) weights, or with several heads (H, N, M) their mean over heads: still rows that sum
    to 1, so every view reads as with one head, and heads that look at different places show as several
    bright areas."""
    return weights if weights.dim() == 2 else weights.mean(0)


def attention_rows(attn_map: AttentionMap, x: int, y: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, mean row): where the query at native pixel (x, y) attends, and where the layer's queries
    attend on average, as (key_rows, key_cols) arrays."""
    weights = head_mean(attn_map.weights)
    row = weights[query_index(x, y, image_size, attn_map.resolution)]
    return (row.numpy().reshape(attn_map.key_grid), weights.mean(0).numpy().reshape(attn_map.key_grid))


def log_ratio(row: np.ndarray, mean_row: np.ndarray) -> np.ndarray:
    """log2 of a row against the mean row. Half of uniform attention is added to both: where neither
    attends, the ratio of two near-zero weights is noise, and it shows as about 0 instead."""
    floor = 0.5 / row.size
    return np.log2((row + floor) / (mean_row + floor))


def _over_face(face: np.ndarray, key_colors: np.ndarray, scale: int, alpha: float = 0.6) -> np.ndarray:
    """Colours on the key grid, (kh, kw, 3), over the face in grey (so its own colours don't read as
    attention), enlarged ``scale`` times. Blended at the face's own size, then enlarged: every pixel
    of the result is a copy of one blended there."""
    colors = upscale(key_colors, face.shape[0] // key_colors.shape[0]).astype(np.float32)
    grey = face.astype(np.float32) @ GREY
    return upscale(((1 - alpha) * grey[..., None] + alpha * colors).round().astype(np.uint8), scale)


def _mark_query(image: np.ndarray, attn_map: AttentionMap, x: int, y: int, scale: int) -> np.ndarray:
    """The clicked point as a ring, and its query's cell in the layer's feature map as a white square."""
    display, resolution = image.shape[0], attn_map.resolution
    marked = Image.fromarray(image)
    draw = ImageDraw.Draw(marked)
    px, py = x * scale + scale // 2, y * scale + scale // 2
    draw.ellipse((px - 7, py - 7, px + 7, py + 7), outline=(0, 0, 0), width=2)
    draw.ellipse((px - 5, py - 5, px + 5, py + 5), outline=(255, 255, 255), width=2)
    # Over the ring: in a fine layer's map the ring is larger than the cell, and would hide it.
    cell = display // resolution
    cy, cx = (cell * i for i in divmod(query_index(x, y, display // scale, resolution), resolution))
    draw.rectangle((cx, cy, cx + cell - 1, cy + cell - 1), outline=(255, 255, 255),
                   width=math.ceil(display / MAP_MIN_SHOWN))
    return np.asarray(marked)


def _sequential(weights: np.ndarray) -> np.ndarray:
    """Weights as COLORMAP colours, divided by their maximum: the brightest key is the most attended."""
    return COLORMAP[np.round(weights / max(float(weights.max()), 1e-12) * 255).astype(np.uint8)]


def attention_overlay(face: np.ndarray, attn_map: AttentionMap, x: int, y: int) -> np.ndarray:
    """Where the query at native pixel (x, y) attends in one layer, over the face, marked."""
    scale = map_scale(face.shape[0])
    row, _ = attention_rows(attn_map, x, y, face.shape[0])
    return _mark_query(_over_face(face, _sequential(row), scale), attn_map, x, y, scale)


def contrast_overlay(face: np.ndarray, attn_map: AttentionMap, x: int, y: int) -> np.ndarray:
    """What the query at (x, y) attends more (red) or less (blue) than the layer's average query does,
    on a scale centred at 0 and saturated at CONTRAST_BITS, over the face, marked."""
    scale = map_scale(face.shape[0])
    ratio = np.clip(log_ratio(*attention_rows(attn_map, x, y, face.shape[0])), -CONTRAST_BITS, CONTRAST_BITS)
    colors = DIVERGING[np.round((ratio / CONTRAST_BITS + 1) * 127.5).astype(np.uint8)]
    return _mark_query(_over_face(face, colors, scale), attn_map, x, y, scale)


def mean_overlay(face: np.ndarray, attn_map: AttentionMap) -> np.ndarray:
    """Where the layer attends whatever the query: its mean row over the face, unmarked."""
    _, mean_row = attention_rows(attn_map, 0, 0, face.shape[0])
    return _over_face(face, _sequential(mean_row), map_scale(face.shape[0]))


def describe_dependence(figures: dict) -> str:
    """A layer's I(Q;K) over FACES faces (``attention_metrics.layer_report``), in plain words."""
    share = figures["mi_normalised"]
    words = ("nearly the same map wherever you click" if share < 0.2 else
             "partly the same map wherever you click" if share < 0.5 else "a map of its own for each part of the face")
    possible = figures["mi_bits"] / share if share > 0 else 0.0
    return (f"over {FACES} faces, where it looks depends on the clicked pixel by {figures['mi_bits']:.2f} bits "
            f"of a possible {possible:.0f}: {words}")


def describe_layer(attn_map: AttentionMap, x: int, y: int, image_size: int) -> str:
    """A caption: the layer's grids, its learned gamma, and how peaked this query's attention is."""
    row, _ = attention_rows(attn_map, x, y, image_size)
    key_rows, key_cols = attn_map.key_grid
    heads = f" · mean of {attn_map.weights.shape[0]} heads" if attn_map.weights.dim() == 3 else ""
    return (f"{attn_map.resolution}x{attn_map.resolution}, keys {key_rows}x{key_cols} · "
            f"γ {attn_map.gamma:+.2f} · peak {float(row.max()) * row.size:.0f}x{heads}")


def layer_views(face: np.ndarray, attn_map: AttentionMap, x: int, y: int) -> list[np.ndarray]:
    """The three views of one layer for the query at (x, y): where the pixel looks, what it looks at
    more than the average pixel does, and where the layer looks whatever the query."""
    return [attention_overlay(face, attn_map, x, y), contrast_overlay(face, attn_map, x, y),
            mean_overlay(face, attn_map)]


def layer_strip(face: np.ndarray, attn_map: AttentionMap, x: int, y: int, figures: dict) -> tuple[np.ndarray, str]:
    """The three ``layer_views`` side by side, STRIP_GAP white pixels apart, in one image (one file to
    encode, copy and fetch instead of three: a click's whole cost beyond Gradio's round trip was about
    the files), and its caption. ``figures``: the layer's ``attention_metrics.layer_report``."""
    views = layer_views(face, attn_map, x, y)
    gap = np.full((views[0].shape[0], STRIP_GAP, 3), 255, np.uint8)
    return (np.concatenate([views[0], gap, views[1], gap, views[2]], axis=1),
            f"{describe_layer(attn_map, x, y, face.shape[0])} — {describe_dependence(figures)}")


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
        self._figures: dict[str, dict] | None = None

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

    def figures(self) -> dict[str, dict]:
        """How much each layer's attention depends on the query, over the faces of seeds 0..FACES-1
        (``attention_metrics.generator_report``), measured once: about 3 s for the bundled generator."""
        with self._lock:
            if self._figures is None:
                self._figures = generator_report(self.g)
            return self._figures

    def attention(self, seed: float, truncation: float, x: float, y: float) -> list[tuple[np.ndarray, str]]:
        """(``layer_strip``, caption) per attention layer for the query at native pixel (x, y)."""
        x, y = check_query(x, y, self.image_size)
        result, figures = self.face(seed, truncation), self.figures()
        return [layer_strip(result.face, m, x, y, figures[m.name]) for m in result.attn_maps]

    def grid(self, seed: float, count: int, truncation: float) -> np.ndarray:
        """Faces of seeds seed, seed+1, ... (wrapping past MAX_SEED), (count, S, S, 3)."""
        seed, threshold = check_seed(seed), truncation_threshold(truncation)
        if not is_whole(count, 1, MAX_GRID):
            raise ValueError(f"a grid holds a whole number of 1 to {MAX_GRID} faces, {got(count)}.")
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
            raise ValueError(f"t must be between 0 (seed A) and 1 (seed B), {got(t)}.")
        z_a, z_b = self._pair(seed_a, seed_b, truncation)
        z = interpolation_latents(z_a, z_b, [t], method)[0]
        key = ("mix", int(seed_a), int(seed_b), float(t), truncation_threshold(truncation), method)
        return self._cached(key, lambda: render(self.g, z).face)

    def walk(self, seed_a: float, seed_b: float, frames: int, truncation: float,
             method: str = "spherical") -> np.ndarray:
        """``frames`` evenly spaced faces from seed_a to seed_b inclusive, (frames, S, S, 3)."""
        if not is_whole(frames, 2, MAX_FRAMES):
            raise ValueError(f"a walk needs a whole number of 2 to {MAX_FRAMES} frames, {got(frames)}.")
        z_a, z_b = self._pair(seed_a, seed_b, truncation)
        z = interpolation_latents(z_a, z_b, np.linspace(0, 1, int(frames)), method)
        with self._lock:
            return generate(self.g, z, batch_size=1)
