"""The app's compute (sagan.explore) on a tiny generator loaded through the app's own loading path."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

import app
from sagan import explore
from sagan.sampling import latent

from conftest import TINY_GAMMAS

SIZE = 32
DISPLAY = SIZE * explore.UPSCALE
OFF = explore.TRUNCATION_OFF


@pytest.fixture(scope="module")
def explorer(tiny_checkpoint):
    return app.load_explorer(tiny_checkpoint)


def test_face_and_attention_maps_have_the_layer_shapes(explorer):
    result = explorer.face(7, OFF)
    assert result.face.shape == (SIZE, SIZE, 3) and result.face.dtype == np.uint8
    layers = [(m.resolution, m.key_grid, tuple(m.weights.shape)) for m in result.attn_maps]
    assert layers == [(8, (4, 4), (64, 16)), (16, (8, 8), (256, 64))]
    assert [m.gamma for m in result.attn_maps] == list(TINY_GAMMAS)
    for m in result.attn_maps:
        torch.testing.assert_close(m.weights.sum(1), torch.ones(m.weights.shape[0]))


def test_same_seed_same_face_across_loads_and_different_seeds_differ(explorer, tiny_checkpoint):
    fresh = app.load_explorer(tiny_checkpoint)
    for seed in (0, 12345, explore.MAX_SEED):
        np.testing.assert_array_equal(explorer.face(seed, OFF).face, fresh.face(seed, OFF).face)
        np.testing.assert_array_equal(explorer.face(seed, 0.7).face, fresh.face(seed, 0.7).face)
    assert not np.array_equal(explorer.face(0, OFF).face, explorer.face(1, OFF).face)


def test_truncation_slider_top_is_off_and_lower_values_bound_the_latent():
    assert explore.truncation_threshold(OFF) is None
    assert explore.truncation_threshold(0.5) == 0.5
    assert latent(3, 500, explore.truncation_threshold(0.5)).abs().max() < 0.5
    for bad in (0.0, explore.TRUNCATION_MIN - 0.01, OFF + 0.01, None):
        with pytest.raises(ValueError, match="truncation must be between"):
            explore.truncation_threshold(bad)


@pytest.mark.parametrize("seed", [-1, 1.5, explore.MAX_SEED + 1, None, float("nan"), float("inf"), "7"])
def test_bad_seeds_are_refused_with_the_valid_range(seed):
    with pytest.raises(ValueError, match=f"0 to {explore.MAX_SEED}"):
        explore.check_seed(seed)


def test_a_click_or_attention_update_reuses_the_cached_forward_pass(tiny_checkpoint):
    fresh = app.load_explorer(tiny_checkpoint)
    forwards = []
    fresh.g.register_forward_hook(lambda *_: forwards.append(1))
    figures = fresh.figures()  # measured once, over 64 faces in one batch
    assert fresh.figures() is figures and len(forwards) == 1
    forwards.clear()
    first = fresh.attention(5, OFF, 0, 0)
    fresh.attention(5, OFF, 31, 31)
    fresh.face(5, OFF)
    assert len(forwards) == 1
    again = fresh.attention(5, OFF, 0, 0)
    assert len(forwards) == 1
    for (a, _), (b, _) in zip(first, again):
        np.testing.assert_array_equal(a, b)
    fresh.face(6, OFF)
    assert len(forwards) == 2


def test_the_render_cache_forgets_the_least_recently_used_face(tiny_checkpoint):
    g = app.load_explorer(tiny_checkpoint).g
    one_face = explore.nbytes(explore.Explorer(g).face(0, OFF))
    assert one_face > 32 * 32 * 3  # the attention matrices are counted, not the face alone
    small = explore.Explorer(g, cache_bytes=int(2.5 * one_face))  # room for two faces
    forwards = []
    small.g.register_forward_hook(lambda *_: forwards.append(1))
    for seed in (1, 2, 1, 3):  # 3 evicts 2, the least recently used, and keeps 1
        small.face(seed, OFF)
    assert len(forwards) == 3
    small.face(1, OFF)
    assert len(forwards) == 3
    small.face(2, OFF)
    assert len(forwards) == 4


def test_corner_pixels_map_to_the_row_major_query_positions():
    # x is the column: the top-right pixel is the last query of the first row, not of the first column.
    for resolution in (8, 16):
        n = resolution * resolution
        corners = {(0, 0): 0, (SIZE - 1, 0): resolution - 1, (0, SIZE - 1): n - resolution, (SIZE - 1, SIZE - 1): n - 1}
        for (x, y), query in corners.items():
            assert explore.query_index(x, y, SIZE, resolution) == query


@settings(max_examples=200, deadline=None)
@given(st.integers(0, SIZE - 1), st.integers(0, SIZE - 1), st.sampled_from([4, 8, 16, 32]))
def test_a_pixel_lies_in_its_query_cell(x, y, resolution):
    row, col = divmod(explore.query_index(x, y, SIZE, resolution), resolution)
    cell = SIZE / resolution
    assert col * cell <= x < (col + 1) * cell and row * cell <= y < (row + 1) * cell


def test_overlay_puts_the_most_attended_key_where_it_lies_on_the_face(explorer):
    result = explorer.face(3, OFF)
    grey = explore.upscale(result.face, explore.UPSCALE) @ np.array([0.299, 0.587, 0.114])
    hottest = 0.4 * grey[..., None] + 0.6 * explore.COLORMAP[255]
    for m in result.attn_maps:
        x, y = 20, 6
        overlay = explore.attention_overlay(result.face, m, x, y)
        assert overlay.shape == (DISPLAY, DISPLAY, 3) and overlay.dtype == np.uint8
        key_row, key_col = divmod(int(m.weights[explore.query_index(x, y, SIZE, m.resolution)].argmax()),
                                  m.key_grid[1])
        cell = DISPLAY // m.key_grid[0]
        # 4 px into the key's cell: off the query cell's outline (inside multiples of 16 px) and the ring.
        cy, cx = key_row * cell + 4, key_col * cell + 4
        np.testing.assert_allclose(overlay[cy, cx], hottest[cy, cx], atol=1)


def test_overlay_marks_the_clicked_point_and_depends_on_the_query(explorer):
    result = explorer.face(3, OFF)
    m = result.attn_maps[1]
    a = explore.attention_overlay(result.face, m, 2, 3)
    b = explore.attention_overlay(result.face, m, 29, 27)
    ring = (3 * explore.UPSCALE + explore.UPSCALE // 2, 2 * explore.UPSCALE + explore.UPSCALE // 2 + 5)
    np.testing.assert_array_equal(a[ring], [255, 255, 255])
    far = (1, DISPLAY // 2)  # a pixel covered by neither query's marks
    assert not np.array_equal(a[far], b[far])


@pytest.mark.parametrize("resolution, x, y", [(8, 3, 3), (16, 1, 1), (16, 5, 6)])
def test_the_query_cells_outline_keeps_its_four_sides_on_a_map_shown_smaller(resolution, x, y):
    """A 64 px face's 512 px map is shown about 280 px wide on a laptop; nearest-neighbour scaling dropped
    sides of a 1 px outline."""
    face = np.zeros((64, 64, 3), dtype=np.uint8)  # dark under the heat: white comes from the marks alone
    n = resolution * resolution
    m = explore.AttentionMap("attn", resolution, (resolution, resolution), 0.5, torch.rand(n, n))
    overlay = explore.attention_overlay(face, m, x, y)
    display = explore.MAP_SIZE
    assert overlay.shape == (display, display, 3)
    side = explore.MAP_MIN_SHOWN
    white = (np.asarray(Image.fromarray(overlay).resize((side, side), Image.NEAREST)) == 255).all(axis=-1)
    cell = display // resolution
    top, left = (cell * i for i in divmod(explore.query_index(x, y, 64, resolution), resolution))
    # Each side: some shown row (column) near it is white all along the cell, the clicked point's ring included.
    along = [i for i in range(side) if left + 3 <= i * display / side <= left + cell - 4]
    down = [i for i in range(side) if top + 3 <= i * display / side <= top + cell - 4]
    near = lambda edge: [i for i in range(side) if abs(i * display / side - edge) < 4]  # noqa: E731
    assert along and down
    for edge in (top, top + cell - 1):
        assert any(white[i, along].all() for i in near(edge)), f"the side at row {edge} is lost"
    for edge in (left, left + cell - 1):
        assert any(white[down, i].all() for i in near(edge)), f"the side at column {edge} is lost"


def panels(strip: np.ndarray) -> list[np.ndarray]:
    """The three views of a layer's strip."""
    step = DISPLAY + explore.STRIP_GAP
    assert strip.shape == (DISPLAY, 3 * DISPLAY + 2 * explore.STRIP_GAP, 3)
    assert (strip[:, DISPLAY:step] == 255).all() and (strip[:, step + DISPLAY:2 * step] == 255).all()
    return [strip[:, i * step:i * step + DISPLAY] for i in range(3)]


def test_a_strip_of_three_views_per_layer_captioned_with_the_layers_figure(explorer):
    strips = explorer.attention(3, OFF, 4, 4)
    result = explorer.face(3, OFF)
    for (strip, _), m in zip(strips, result.attn_maps):
        for panel, view in zip(panels(strip), explore.layer_views(result.face, m, 4, 4)):
            np.testing.assert_array_equal(panel, view)
    captions = [caption for _, caption in strips]
    figure = (r" — over 64 faces, where it looks depends on the clicked pixel by \d\.\d\d bits of a possible {}: "
              r"(nearly|partly) the same map wherever you click")
    assert re.fullmatch(r"8x8, keys 4x4 · γ \+0\.50 · peak \d+x" + figure.format(4), captions[0]), captions[0]
    assert re.fullmatch(r"16x16, keys 8x8 · γ \+1\.50 · peak \d+x" + figure.format(6), captions[1]), captions[1]
    with pytest.raises(ValueError, match="y must be a pixel coordinate"):
        explorer.attention(3, OFF, 4, SIZE)


def test_the_mean_view_is_the_same_wherever_you_click_and_the_others_follow_the_click(explorer):
    a, b = explorer.attention(5, OFF, 2, 2), explorer.attention(5, OFF, 29, 29)
    away = np.ones((DISPLAY, DISPLAY), bool)  # off both clicks' marks
    away[:48, :48] = away[-48:, -48:] = False
    for (strip_a, _), (strip_b, _) in zip(a, b):
        raw_a, contrast_a, mean_a = panels(strip_a)
        raw_b, contrast_b, mean_b = panels(strip_b)
        np.testing.assert_array_equal(mean_a, mean_b)
        for view_a, view_b in ((raw_a, raw_b), (contrast_a, contrast_b)):
            assert np.abs(view_a.astype(int) - view_b.astype(int))[away].mean() > 2


def uniform_face_map(weights: torch.Tensor) -> tuple[np.ndarray, explore.AttentionMap]:
    """A mid-grey 32 px face and a 4x4 layer with keys on a 4x4 grid holding ``weights``."""
    return np.full((SIZE, SIZE, 3), 128, np.uint8), explore.AttentionMap("attn", 4, (4, 4), 1.0, weights)


def key_colour(image: np.ndarray, key: int) -> np.ndarray:
    """The colour at the centre of key cell ``key`` of a 4x4 key grid."""
    cell = image.shape[0] // 4
    row, col = divmod(key, 4)
    return image[row * cell + cell // 2, col * cell + cell // 2]


def test_the_contrast_view_is_red_where_the_pixel_looks_more_than_the_average_blue_where_less_white_alike():
    weights = torch.zeros(16, 16)
    weights[:15, :15] = 1 / 15  # every query but the last looks evenly at the first 15 keys
    weights[15, 15] = 1.0       # the last only at the last key
    face, m = uniform_face_map(weights)
    alike = explore.contrast_overlay(face, m, 0, 0)  # the first query, as the average but for the last key
    other = explore.contrast_overlay(face, m, SIZE - 1, SIZE - 1)  # the last query
    over_grey = lambda colour: (0.4 * 128 + 0.6 * colour.astype(float)).round()  # noqa: E731
    red, white, blue = (over_grey(explore.DIVERGING[i]) for i in (-1, 128, 0))
    np.testing.assert_allclose(key_colour(other, 15), red, atol=1)  # 1 against a mean of 1/16: past 8x
    np.testing.assert_allclose(key_colour(alike, 5), white, atol=3)  # 1/15 against 1/16
    for less in (key_colour(other, 5), key_colour(alike, 15)):  # 0 against 1/16: blue, not saturated
        assert less[2] > less[0] + 20 and np.abs(less - blue).max() > 20
    np.testing.assert_allclose(explore.log_ratio(np.array([0.5, 0.0]), np.array([0.25, 0.25])),
                               -explore.log_ratio(np.array([0.25, 0.25]), np.array([0.5, 0.0])))


def test_the_raw_and_mean_views_put_the_most_attended_key_brightest():
    weights = torch.full((16, 16), 0.5 / 15)
    weights[:, 6] = 0.5
    face, m = uniform_face_map(weights)
    hottest = (0.4 * 128 + 0.6 * explore.COLORMAP[255]).round()
    for image in (explore.attention_overlay(face, m, 20, 20), explore.mean_overlay(face, m)):
        np.testing.assert_allclose(key_colour(image, 6), hottest, atol=1)
        assert key_colour(image, 9).sum() < key_colour(image, 6).sum() - 200


def test_several_heads_show_as_the_mean_of_their_rows_and_say_so():
    heads = torch.softmax(torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0)) * 3, dim=-1)
    face, multi = uniform_face_map(heads)
    _, single = uniform_face_map(heads.mean(0))
    figures = {"mi_bits": 1.0, "mi_normalised": 0.25}
    (strip, caption), (expected, expected_caption) = (explore.layer_strip(face, m, 3, 30, figures)
                                                      for m in (multi, single))
    np.testing.assert_array_equal(strip, expected)
    assert caption == expected_caption.replace("x — over", "x · mean of 2 heads — over", 1)
    assert "mean of" not in expected_caption


@pytest.mark.parametrize("share, words", [(0.1, "nearly the same map wherever you click"),
                                          (0.3, "partly the same map wherever you click"),
                                          (0.7, "a map of its own for each part of the face")])
def test_a_layers_figure_in_plain_words(share, words):
    text = explore.describe_dependence({"mi_bits": 6 * share, "mi_normalised": share})
    assert text == (f"over 64 faces, where it looks depends on the clicked pixel by {6 * share:.2f} bits of a "
                    f"possible 6: {words}")


@pytest.mark.parametrize("method", explore.METHODS)
@pytest.mark.parametrize("truncation", [OFF, 0.8])
def test_interpolation_ends_are_the_two_seeds_faces(explorer, method, truncation):
    face_a, face_b = explorer.face(11, truncation).face, explorer.face(42, truncation).face
    np.testing.assert_array_equal(explorer.interpolate(11, 42, 0.0, truncation, method), face_a)
    np.testing.assert_array_equal(explorer.interpolate(11, 42, 1.0, truncation, method), face_b)
    middle = explorer.interpolate(11, 42, 0.5, truncation, method)
    assert not np.array_equal(middle, face_a) and not np.array_equal(middle, face_b)


def test_spherical_and_linear_paths_differ_in_between():
    z_a, z_b = latent(1, 64), latent(2, 64)
    sph, lin = (explore.interpolation_latents(z_a, z_b, [0.5], m)[0] for m in explore.METHODS)
    # Linear mixing of two independent Gaussians shrinks the norm; the arc keeps it.
    assert lin.norm() < 0.85 * sph.norm()
    with pytest.raises(ValueError, match="spherical, linear"):
        explore.interpolation_latents(z_a, z_b, [0.5], "cubic")


def test_walk_runs_from_seed_a_to_seed_b_and_saves_a_looping_gif(explorer, tmp_path):
    frames = explorer.walk(11, 42, 5, OFF)
    assert frames.shape == (5, SIZE, SIZE, 3)
    np.testing.assert_array_equal(frames[0], explorer.face(11, OFF).face)
    np.testing.assert_array_equal(frames[-1], explorer.face(42, OFF).face)
    path = tmp_path / "walk.gif"
    explore.save_gif(explore.upscale(frames, 4), str(path))
    with Image.open(path) as gif:
        assert gif.size == (SIZE * 4, SIZE * 4) and gif.n_frames == 8 and gif.info["loop"] == 0
    for frames in (1, explore.MAX_FRAMES + 1, 2.5):
        with pytest.raises(ValueError, match=f"2 to {explore.MAX_FRAMES} frames"):
            explorer.walk(11, 42, frames, OFF)


def test_grid_holds_consecutive_seeds(explorer):
    faces = explorer.grid(explore.MAX_SEED - 1, 4, OFF)
    assert faces.shape == (4, SIZE, SIZE, 3)
    for face, seed in zip(faces, [explore.MAX_SEED - 1, explore.MAX_SEED, 0, 1]):
        np.testing.assert_array_equal(face, explorer.face(seed, OFF).face)
    sheet = explore.tile(faces, columns=3, gap=2)
    assert sheet.shape == (2 * SIZE + 2, 3 * SIZE + 4, 3)
    np.testing.assert_array_equal(sheet[SIZE + 2:, :SIZE], faces[3])
    with pytest.raises(ValueError, match=f"1 to {explore.MAX_GRID} faces"):
        explorer.grid(0, explore.MAX_GRID + 1, OFF)


@pytest.mark.parametrize("count, columns", [(1, 1), (4, 2), (5, 3), (8, 3), (9, 3), (10, 4), (64, 8)])
def test_a_sheet_is_as_square_as_its_count_allows(count, columns):
    """The app's grid, sagan.sample --grid and training's sample grids share this layout."""
    faces = np.zeros((count, 4, 4, 3), dtype=np.uint8)
    assert explore.tile(faces, gap=0).shape[1] == columns * 4


def test_upscale_is_nearest_neighbour():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = explore.upscale(image, 4)
    assert big.shape == (8, 12, 3)
    np.testing.assert_array_equal(big[::4, ::4], image)
    np.testing.assert_array_equal(big[5, 9], image[1, 2])
    batch = np.stack([image, 255 - image])
    np.testing.assert_array_equal(explore.upscale(batch, 4), np.stack([big, 255 - big]))
