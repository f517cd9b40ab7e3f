"""The app as users reach it: every named endpoint through gradio_client, and the command line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import app
from sagan import editing, explore
from sagan.networks import Generator
from tests.factories import tiny_model

from conftest import ROOT

SIZE = 32
OFF = explore.TRUNCATION_OFF


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def explorer(tiny_checkpoint):
    return app.load_explorer(tiny_checkpoint)


def read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_every_endpoint_is_named(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/attention", "/interpolate", "/grid", "/walk"} <= set(endpoints)


def test_generate_gives_the_same_pixels_as_another_process(client, explorer):
    face = read(client.predict(seed=9, truncation=0.8, api_name="/generate"))
    assert face.shape == (SIZE * explore.UPSCALE, SIZE * explore.UPSCALE, 3)
    np.testing.assert_array_equal(face, explore.upscale(explorer.face(9, 0.8).face, explore.UPSCALE))
    np.testing.assert_array_equal(read(client.predict(seed=9, truncation=0.8, api_name="/generate")), face)


def test_attention_gives_one_captioned_strip_of_three_views_per_layer(client, explorer):
    layers = client.predict(seed=9, truncation=OFF, x=30, y=1, api_name="/attention")
    assert [item["caption"].split(" ·")[0] for item in layers] == ["8x8, keys 4x4", "16x16, keys 8x8"]
    assert "γ +1.50" in layers[1]["caption"] and "depends on the clicked pixel" in layers[1]["caption"]
    expected = explorer.attention(9, OFF, 30, 1)
    for item, (strip, _) in zip(layers, expected):
        assert strip.shape == (SIZE * explore.UPSCALE, 3 * SIZE * explore.UPSCALE + 2 * explore.STRIP_GAP, 3)
        np.testing.assert_array_equal(read(item["image"]), strip)


def test_interpolate_ends_at_the_two_seeds_with_spherical_as_default(client):
    face_a = read(client.predict(seed=4, truncation=OFF, api_name="/generate"))
    face_b = read(client.predict(seed=5, truncation=OFF, api_name="/generate"))
    at = lambda t, **kw: read(client.predict(seed_a=4, seed_b=5, t=t, truncation=OFF,  # noqa: E731
                                             api_name="/interpolate", **kw))
    np.testing.assert_array_equal(at(0.0), face_a)
    np.testing.assert_array_equal(at(1.0), face_b)
    np.testing.assert_array_equal(at(0.5), at(0.5, method="spherical"))
    assert not np.array_equal(at(0.5), at(0.5, method="linear"))


def test_grid_and_walk(client):
    grid = read(client.predict(seed=0, count=4, truncation=OFF, api_name="/grid"))
    assert grid.shape == (2 * (2 * SIZE + 2), 2 * (2 * SIZE + 2), 3)
    strip, preview, gif = client.predict(seed_a=4, seed_b=5, frames=3, truncation=OFF, method="linear",
                                         api_name="/walk")
    assert read(strip).shape == (2 * SIZE, 2 * (3 * SIZE + 2 * 2), 3)
    with Image.open(gif) as walk:
        assert walk.format == "GIF" and walk.n_frames == 4
    assert preview.endswith(".gif") and Path(gif).name == "walk-4-5-3-3-linear.gif"  # what a download is named
    long_strip = read(client.predict(seed_a=4, seed_b=5, frames=10, truncation=OFF, method="linear",
                                     api_name="/walk")[0])
    assert long_strip.shape == (2 * (2 * SIZE + 2), 2 * (8 * SIZE + 7 * 2), 3)  # rows of 8 frames


def test_served_files_take_turns_in_their_folders_overwriting_the_file_written_keep_files_ago():
    files = app.ServedFiles(keep=2)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    paths = [Path(files.png(image * i, "face.png")) for i in range(3)]
    assert paths[0] != paths[1] and paths[2] == paths[0] and {p.name for p in paths} == {"face.png"}
    np.testing.assert_array_equal(np.asarray(Image.open(paths[2])), image * 2)
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1])), image)
    gif = files.path("walk.gif")  # in the second folder, whose face.png would be left unserved
    assert gif.parent == paths[1].parent and not paths[1].exists()


STOPS = [(1, "0"), (2, "0"), (1, "1")]  # (SIGTERMs sent, GRADIO_DEBUG)


@pytest.fixture(scope="module")
def apps_to_stop(tiny_checkpoint, tmp_path_factory):
    """An app for each of STOPS, each with its own temp directory, all started at once: most of a start
    is importing Gradio and torch. {stop: (process, port, temp directory)}"""
    sys.path.insert(0, str(ROOT / "bench"))
    from load_app import free_port, start_app, stop_app
    ports = set()
    while len(ports) < len(STOPS):
        ports.add(free_port())
    apps = {}
    for (signals, debug), port in zip(STOPS, ports):
        tmp = tmp_path_factory.mktemp("stop")
        with open(tmp / "app.log", "wb") as log:
            apps[signals, debug] = start_app(str(tiny_checkpoint), port, log,
                                             env={"TMPDIR": str(tmp), "GRADIO_DEBUG": debug}), port, tmp
    yield apps
    for proc, _, _ in apps.values():
        if proc.poll() is None:  # a test that failed before stopping its app
            stop_app(proc)


@pytest.mark.parametrize("signals, debug", STOPS)
def test_stopping_the_app_removes_its_served_files(apps_to_stop, signals, debug):
    """A Space or a container is stopped with SIGTERM: the app closes as on Ctrl-C, and its folder of
    served images goes with it rather than staying behind in the temp directory. A second signal while
    it closes (an impatient second Ctrl-C) ended in a traceback; with GRADIO_DEBUG=1 (launch() then waits
    for the signal itself) the app hung after it."""
    from load_app import stop_app, wait_until_up
    proc, port, tmp = apps_to_stop[signals, debug]
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/", time.monotonic() + 120)
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(seed=3, truncation=OFF, api_name="/generate")
        (served,) = tmp.glob("sagan-app-*")
        assert any(served.rglob("face.png"))
        if signals == 2:
            proc.terminate()
            time.sleep(0.1)  # while the server closes
    finally:
        stop_app(proc)
    log = (tmp / "app.log").read_text()
    # A second signal that comes once the server has closed and Python is exiting meets the default action
    # (-15), after the served files went.
    assert proc.returncode in ((0,) if signals == 1 else (0, -signal.SIGTERM)) and "Traceback" not in log, log
    assert not served.exists()


@pytest.mark.parametrize("api_name, kwargs, message", [
    ("/generate", dict(seed=1.5, truncation=OFF), "seed must be a whole number"),
    ("/generate", dict(seed=-1, truncation=OFF), "seed must be a whole number from 0 to 2147483647, got -1"),
    ("/generate", dict(seed=1, truncation=0.0), "truncation must be between 0.2 and 3.0"),
    ("/attention", dict(seed=1, truncation=OFF, x=SIZE, y=0), "x must be a pixel coordinate"),
    ("/attention", dict(seed=1, truncation=OFF, x=0, y=-1), "y must be a pixel coordinate"),
    ("/interpolate", dict(seed_a=1, seed_b=2, t=0.5, truncation=OFF, method="cubic"), "spherical"),
])
def test_bad_inputs_get_a_message_not_a_traceback(client, api_name, kwargs, message):
    with pytest.raises(AppError, match=message) as error:
        client.predict(api_name=api_name, **kwargs)
    assert "Traceback" not in str(error.value)


def test_address_defaults_and_environment(monkeypatch):
    for name in ("SAGAN_CHECKPOINT", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    # $GRADIO_SERVER_PORT as app.py found it when imported (it takes it out of Gradio's sight).
    monkeypatch.setattr(app, "SERVER_PORT", None)
    args = app.parse_args([])
    assert (args.checkpoint, args.host, args.port) == (app.DEFAULT_CHECKPOINT, "127.0.0.1", 7860)
    monkeypatch.setenv("SAGAN_CHECKPOINT", "other.safetensors")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setattr(app, "SERVER_PORT", "8080")
    args = app.parse_args([])
    assert (args.checkpoint, args.host, args.port) == ("other.safetensors", "0.0.0.0", 8080)
    args = app.parse_args(["--checkpoint", "x.safetensors", "--host", "::1", "--port", "9000"])
    assert (args.checkpoint, args.host, args.port) == ("x.safetensors", "::1", 9000)
    # A blank variable (a blank line in a Space's or a container's settings) counts as unset.
    monkeypatch.setenv("SAGAN_CHECKPOINT", "")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "")
    monkeypatch.setattr(app, "SERVER_PORT", "")
    args = app.parse_args([])
    assert (args.checkpoint, args.host, args.port) == (app.DEFAULT_CHECKPOINT, "127.0.0.1", 7860)


def test_a_port_variable_that_is_no_number_is_one_line_and_a_port_flag_overrides_it(tmp_path):
    """Gradio parses $GRADIO_SERVER_PORT as it is imported: 'abc' used to end in its traceback, whatever --port said.
    With --port given, the next mistake, a missing checkpoint, is the one line reported."""
    env = {**os.environ, "GRADIO_SERVER_PORT": "abc"}
    missing = str(tmp_path / "nope.safetensors")
    # Both at once: most of each run is importing Gradio and torch.
    refused, overridden = [subprocess.Popen([sys.executable, "app.py", "--checkpoint", missing, *flags], cwd=ROOT,
                                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                           for flags in ([], ["--port", "7899"])]
    refused_err, overridden_err = (proc.communicate(timeout=120)[1] for proc in (refused, overridden))
    assert refused.returncode == 2 and "Traceback" not in refused_err
    assert "argument --port: 'abc' is not a port number: choose one from 1 to 65535" in refused_err
    assert overridden.returncode == 2 and overridden_err.count("\n") == 1
    assert overridden_err.startswith("error: cannot load the checkpoint")
    assert missing in overridden_err and "--checkpoint" in overridden_err


def test_a_generator_without_attention_layers_says_so_instead_of_showing_an_empty_maps_box():
    demo = app.build_demo(explore.Explorer(Generator(tiny_model(g_attn=(), d_attn=()))))
    blocks = list(demo.blocks.values())
    assert any(isinstance(b, gr.Markdown) and "no self-attention layers" in b.value for b in blocks)
    assert not next(b for b in blocks if isinstance(b, gr.Gallery)).visible
    with_maps = app.build_demo(explore.Explorer(Generator(tiny_model())))
    assert next(b for b in with_maps.blocks.values() if isinstance(b, gr.Gallery)).visible


@pytest.mark.parametrize("content", [b"not a safetensors file", b""])
def test_an_invalid_checkpoint_exits_with_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        app.main(["--checkpoint", str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load the checkpoint") and err.count("\n") == 1
    assert "is not a safetensors file" in err


EDIT_NAMES = {"/edit", "/edit_face", "/edit_attention", "/edit_grid", "/edit_walk", "/edit_nearby"}
NO_EDIT = dict(steps="", **{f"amount_{i + 1}": 0.0 for i in range(editing.EDIT_DIRECTIONS)})


@pytest.fixture(scope="module")
def editor(explorer):
    return editing.Editor(explorer)


def test_the_edit_endpoints_are_named_with_one_amount_per_direction(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert EDIT_NAMES <= set(endpoints)
    names = lambda endpoint: [p["parameter_name"] for p in endpoints[endpoint]["parameters"]]  # noqa: E731
    assert names("/edit") == ["seed", "truncation", "direction", "amount"]
    assert names("/edit_face") == ["seed", "truncation", *NO_EDIT]
    assert names("/edit_nearby") == ["seed", "truncation", *NO_EDIT, "radius", "first_seed"]


def test_edit_with_amount_0_is_the_generated_face_and_edit_face_makes_any_edit_again(client, editor):
    face = read(client.predict(seed=9, truncation=0.8, api_name="/generate"))
    np.testing.assert_array_equal(read(client.predict(seed=9, truncation=0.8, direction=3, amount=0,
                                                      api_name="/edit")), face)
    edited = read(client.predict(seed=9, truncation=0.8, direction=3, amount=-1.5, api_name="/edit"))
    np.testing.assert_array_equal(edited, explore.upscale(editor.one(9, 0.8, 3, -1.5).face, explore.UPSCALE))
    assert not np.array_equal(edited, face)
    again = read(client.predict(seed=9, truncation=0.8, **{**NO_EDIT, "amount_3": -1.5}, api_name="/edit_face"))
    np.testing.assert_array_equal(again, edited)
    stepped = dict(NO_EDIT, steps="4:0.5", amount_1=2.0)
    np.testing.assert_array_equal(
        read(client.predict(seed=9, truncation=0.8, **stepped, api_name="/edit_face")),
        explore.upscale(editor.face(9, 0.8, "4:0.5", [2.0] + [0.0] * 7).face, explore.UPSCALE))


def test_edit_grid_walk_nearby_faces_and_maps(client, editor):
    edit = dict(NO_EDIT, amount_2=1.0)
    amounts = [0.0, 1.0] + [0.0] * 6
    columns = len(editing.GRID_AMOUNTS)
    grid = read(client.predict(seed=2, truncation=OFF, **edit, api_name="/edit_grid"))
    np.testing.assert_array_equal(grid, explore.upscale(explore.tile(editor.grid(2, OFF, "", amounts),
                                                                     columns=columns), 2))
    assert grid.shape == (2 * (8 * SIZE + 7 * 2), 2 * (columns * SIZE + (columns - 1) * 2), 3)
    preview, gif = client.predict(seed=2, truncation=OFF, **edit, direction=2, frames=4, api_name="/edit_walk")
    with Image.open(gif) as walk:
        assert walk.format == "GIF" and walk.n_frames == 6 and walk.size == (4 * SIZE, 4 * SIZE)  # there and back
    assert preview.endswith(".gif") and Path(gif).name == "edit-2-direction-2.gif"
    nearby = client.predict(seed=2, truncation=OFF, **edit, radius=0.3, first_seed=5, api_name="/edit_nearby")
    assert len(nearby) == editing.VARIATIONS
    np.testing.assert_array_equal(read(nearby[1]["image"]),
                                  explore.upscale(editor.face(2, OFF, "6:0.3", amounts).face, 2))
    layers = client.predict(seed=2, truncation=OFF, **edit, x=30, y=1, api_name="/edit_attention")
    expected = editor.attention(2, OFF, "", amounts, 30, 1)
    assert [item["caption"] for item in layers] == [caption for _, caption in expected]
    for item, (overlay, _) in zip(layers, expected):
        np.testing.assert_array_equal(read(item["image"]), overlay)


@pytest.mark.parametrize("api_name, kwargs, message", [
    ("/edit", dict(seed=1, truncation=OFF, direction=0, amount=1), "direction must be a whole number from 1 to 8"),
    ("/edit", dict(seed=1, truncation=OFF, direction=1, amount=4), "amount must be a number from -3 to 3"),
    ("/edit", dict(seed=1, truncation=OFF, direction=1, amount="1"), "amount must be a number"),
    ("/edit", dict(seed=-1, truncation=OFF, direction=1, amount=1), "seed must be a whole number"),
    ("/edit_face", dict(seed=1, truncation=OFF, **dict(NO_EDIT, steps="3")), "steps must be nearby steps"),
    ("/edit_face", dict(seed=1, truncation=9, **NO_EDIT), "truncation must be between"),
    ("/edit_grid", dict(seed=1, truncation=OFF, **dict(NO_EDIT, amount_8=None)), "amount_8 must be a number"),
    ("/edit_walk", dict(seed=1, truncation=OFF, **NO_EDIT, direction=1, frames=1), "2 to 32 frames"),
    ("/edit_nearby", dict(seed=1, truncation=OFF, **NO_EDIT, radius=0, first_seed=1), "radius must be"),
    ("/edit_attention", dict(seed=1, truncation=OFF, **NO_EDIT, x=0, y=SIZE), "y must be a pixel coordinate"),
])
def test_bad_edit_inputs_get_a_message_not_a_traceback(client, api_name, kwargs, message):
    with pytest.raises(AppError, match=message) as error:
        client.predict(api_name=api_name, **kwargs)
    assert "Traceback" not in str(error.value)


def test_the_bundled_generators_directions_carry_what_they_change_and_others_only_numbers(explorer):
    bundled = editing.Editor(app.load_explorer(app.DEFAULT_CHECKPOINT))
    assert app.direction_notes(bundled.eigenvalues.tolist()) == app.BUNDLED_DIRECTIONS
    assert app.direction_notes(editing.Editor(explorer).eigenvalues.tolist()) is None
