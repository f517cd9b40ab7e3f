"""Edits of a face (sagan.editing) on the tiny generator, loaded through the app's own loading path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import app
from sagan import editing, explore
from sagan.sampling import latent

SIZE = 32
OFF = explore.TRUNCATION_OFF


@pytest.fixture(scope="module")
def editor(tiny_checkpoint):
    return editing.Editor(app.load_explorer(tiny_checkpoint))


def amounts(editor, **set_) -> list[float]:
    """Amounts of every direction, 0 except those named d1=..., d2=... (numbered from 1)."""
    values = [0.0] * editor.count
    for name, value in set_.items():
        values[int(name[1:]) - 1] = value
    return values


def test_the_editor_has_the_top_directions_of_the_generator(editor):
    assert editor.count == editing.EDIT_DIRECTIONS  # the tiny latent has 16 entries: 8 of them are shown
    torch.testing.assert_close(editor.directions @ editor.directions.T, torch.eye(editor.count), atol=1e-5, rtol=0)
    assert (editor.eigenvalues[:-1] >= editor.eigenvalues[1:]).all()


@pytest.mark.parametrize("truncation", [OFF, 0.7])
def test_an_edit_of_nothing_is_the_seeds_face_exactly(editor, truncation):
    face = editor.explorer.face(5, truncation).face
    np.testing.assert_array_equal(editor.face(5, truncation, "", amounts(editor)).face, face)
    np.testing.assert_array_equal(editor.one(5, truncation, 3, 0.0).face, face)
    assert not np.array_equal(editor.one(5, truncation, 3, 1.0).face, face)


def test_an_edit_moves_the_truncated_latent_along_its_directions(editor):
    """The edit applies after truncation: the seed's truncated latent plus amount x direction, so the face
    is that latent's face, drawn by the explorer's own render."""
    z = latent(5, editor.explorer.z_dim, 0.7)
    moved = editing.edited_latent(z, editor.directions, amounts(editor, d1=1.5, d4=-2.0))
    torch.testing.assert_close(moved, z + 1.5 * editor.directions[0] - 2.0 * editor.directions[3])
    expected = explore.render(editor.explorer.g, moved).face
    np.testing.assert_array_equal(editor.face(5, 0.7, "", amounts(editor, d1=1.5, d4=-2.0)).face, expected)
    np.testing.assert_array_equal(editor.one(5, 0.7, 2, -1.0).face,
                                  editor.face(5, 0.7, "", amounts(editor, d2=-1.0)).face)


def test_the_edited_faces_attention_maps_are_its_own(editor):
    edit = amounts(editor, d1=2.0)
    result = editor.face(9, OFF, "", edit)
    maps = editor.attention(9, OFF, "", edit, 4, 20)
    assert len(maps) == len(result.attn_maps) == 2
    figures = editor.explorer.figures()
    for (views, caption), m in zip(maps, result.attn_maps):
        expected_views, expected_caption = explore.layer_strip(result.face, m, 4, 20, figures[m.name])
        np.testing.assert_array_equal(views, expected_views)   # the first tab's three views, of the edited face
        assert caption == expected_caption
    unedited = editor.explorer.attention(9, OFF, 4, 20)
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(maps, unedited))


def test_the_grid_sets_each_direction_to_each_step_and_keeps_the_other_amounts(editor):
    edit = amounts(editor, d2=0.5)
    faces = editor.grid(3, OFF, "4:0.3", edit)
    columns = len(editing.GRID_AMOUNTS)
    assert faces.shape == (editor.count * columns, SIZE, SIZE, 3)
    for row, column in ((0, 0), (1, columns - 1), (editor.count - 1, 2)):
        expected = list(edit)
        expected[row] = editing.GRID_AMOUNTS[column]
        np.testing.assert_array_equal(faces[row * columns + column], editor.face(3, OFF, "4:0.3", expected).face)


def test_the_walk_goes_from_the_lowest_to_the_highest_amount_of_one_direction(editor):
    frames = editor.walk(3, OFF, "", amounts(editor, d1=1.0), 2, 5)
    assert frames.shape == (5, SIZE, SIZE, 3)
    for frame, amount in ((frames[0], -editing.MAX_AMOUNT), (frames[2], 0.0), (frames[-1], editing.MAX_AMOUNT)):
        np.testing.assert_array_equal(frame, editor.face(3, OFF, "", amounts(editor, d1=1.0, d2=amount)).face)
    with pytest.raises(ValueError, match=f"2 to {explore.MAX_FRAMES} frames"):
        editor.walk(3, OFF, "", amounts(editor), 2, 1)


def test_a_nearby_face_is_the_current_face_with_its_step_added(editor):
    """So a chosen nearby face becomes the current face exactly: its step joins the edit's steps."""
    edit = amounts(editor, d3=1.0)
    faces = editor.variations(3, 0.8, "7:0.2", edit, 0.25, explore.MAX_SEED)
    assert faces.shape == (editing.VARIATIONS, SIZE, SIZE, 3)
    steps = editing.variation_steps(explore.MAX_SEED, 0.25)
    assert steps[:2] == [(explore.MAX_SEED, 0.25), (0, 0.25)]  # the step seeds wrap past the largest
    for face, step in zip(faces, steps):
        np.testing.assert_array_equal(face, editor.face(3, 0.8, "7:0.2, " + editing.format_steps([step]), edit).face)
    current = editor.face(3, 0.8, "7:0.2", edit).face
    assert not any(np.array_equal(face, current) for face in faces)
    assert len({face.tobytes() for face in faces}) == editing.VARIATIONS


def test_a_random_step_is_standard_normal_and_not_its_seeds_latent():
    step = editing.random_step(11, 4096)
    assert abs(float(step.mean())) < 0.05 and abs(float(step.std()) - 1) < 0.05
    assert not torch.equal(step[:16], latent(11, 16))
    torch.testing.assert_close(editing.random_step(11, 4096), step, atol=0, rtol=0)


def test_steps_round_trip_through_their_text():
    steps = ((12, 0.5), (explore.MAX_SEED, 0.25))
    assert editing.parse_steps(editing.format_steps(steps)) == steps
    assert editing.parse_steps("") == editing.parse_steps("  ") == editing.parse_steps(None) == ()


@pytest.mark.parametrize("text, message", [
    ("12", "'12' is not"), ("a:0.5", "'a:0.5' is not"), ("1:0.5,", "'' is not"), (7, "got 7"),
    ("-1:0.5", "seed must be a whole number"), ("1:0", "radius must be a number above 0"),
    ("1:1.5", "at most 1"), (", ".join(["1:0.1"] * (editing.MAX_STEPS + 1)), f"at most {editing.MAX_STEPS}"),
])
def test_bad_steps_are_refused_with_the_format(text, message):
    with pytest.raises(ValueError, match=message):
        editing.parse_steps(text)


def test_bad_amounts_directions_and_radii_name_the_range(editor):
    for bad in (editing.MAX_AMOUNT + 0.1, float("nan"), None, "1", True):
        with pytest.raises(ValueError, match=f"amount_2 must be a number from -{editing.MAX_AMOUNT:g} to"):
            editor.face(1, OFF, "", amounts(editor, d2=bad))
    with pytest.raises(ValueError, match=f"takes {editor.count} amounts"):
        editor.face(1, OFF, "", [0.0] * (editor.count - 1))
    for bad in (0, editor.count + 1, 1.5, None):
        with pytest.raises(ValueError, match=f"direction must be a whole number from 1 to {editor.count}"):
            editor.one(1, OFF, bad, 1.0)
    with pytest.raises(ValueError, match="radius must be"):
        editor.variations(1, OFF, "", amounts(editor), 0.0, 1)


def test_a_generator_with_a_short_latent_gets_as_many_directions_as_it_has(tiny_checkpoint):
    from sagan.networks import Generator
    from tests.factories import tiny_model
    short = editing.Editor(explore.Explorer(Generator(tiny_model(z_dim=3))))
    assert short.count == 3 and short.directions.shape == (3, 3)
