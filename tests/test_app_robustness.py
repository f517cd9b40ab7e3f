"""The app under hostile input and the surface it exposes.

Random values (text, null, booleans, NaN, inf, huge numbers, lists) go to every callback, as
Gradio hands them over and raw, then through the API; each call either answers or refuses with a
message (gr.Error / ValueError), never another exception. The server serves only its generated
outputs, takes no uploads and opens no share link.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

import app
from sagan import explore

from conftest import ROOT

SIZE = 32
OFF = explore.TRUNCATION_OFF
ENDPOINTS = ("generate", "attention", "grid", "interpolate", "walk")
GENERIC = "has not enabled verbose error reporting"   # Gradio's text for an unexpected exception

# Mostly wrong values, with enough valid ones (small seeds, slider-range floats, the methods)
# that some calls get through to the generator.
ANY = st.one_of(
    st.integers(0, 8), st.floats(0, 3), st.sampled_from(explore.METHODS),
    st.integers(), st.integers(min_value=2 ** 64), st.integers(max_value=-(2 ** 64)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.none(), st.booleans(),
    st.lists(st.integers(0, 8), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
# What JSON (and so gradio_client) can carry: no NaN or inf, those go over raw HTTP below.
JSON_ANY = st.one_of(st.integers(0, 8), st.floats(0, 3), st.sampled_from(explore.METHODS), st.integers(),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.none(),
                     st.booleans(), st.lists(st.integers(0, 8), max_size=2))


@pytest.fixture(scope="module")
def demo(tiny_checkpoint):
    return app.build_demo(app.load_explorer(tiny_checkpoint))


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def endpoint(demo, api_name):
    return next(fn for fn in demo.fns.values() if fn.api_name == api_name)


def assert_well_formed(api_name, result):
    def image(path, shape=None):  # the callbacks hand Gradio image files (see app.ServedFiles)
        a = np.asarray(Image.open(path))
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
        if shape:
            assert a.shape == shape
    display = (SIZE * explore.UPSCALE, SIZE * explore.UPSCALE, 3)
    if api_name in ("generate", "interpolate"):
        image(result, display)
    elif api_name == "attention":
        assert len(result) == 2
        for strip, caption in result:  # three views of a layer side by side
            image(strip, (display[0], 3 * display[1] + 2 * explore.STRIP_GAP, 3))
            assert ", keys " in caption and "γ" in caption and "depends on the clicked pixel" in caption
    elif api_name == "grid":
        image(result)
    else:
        strip, preview, gif = result
        image(strip)
        assert preview == gif and Path(gif).is_file()


@pytest.mark.parametrize("through_gradio", [True, False], ids=["preprocessed", "raw"])
@pytest.mark.parametrize("api_name", ENDPOINTS)
def test_callbacks_answer_or_refuse_with_a_message(demo, api_name, through_gradio):
    fn = endpoint(demo, api_name)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(ANY, min_size=len(fn.inputs), max_size=len(fn.inputs)))
    def check(values):
        try:
            if through_gradio:  # as the server runs it: each component's preprocess, then the callback
                values = [block.preprocess(v) for block, v in zip(fn.inputs, values)]
            result = fn.fn(*values)
        except gr.Error as e:
            assert str(e) and "Traceback" not in str(e)
            return
        assert_well_formed(api_name, result)

    check()


@settings(max_examples=150, deadline=None)
@given(ANY, ANY, ANY, ANY)
def test_explore_checks_raise_only_value_error(seed, truncation, x, y):
    for call in (lambda: explore.check_seed(seed), lambda: explore.truncation_threshold(truncation),
                 lambda: explore.check_query(x, y, SIZE),
                 lambda: explore.interpolation_latents(explore.latent(0, 4), explore.latent(1, 4), [0.5], x)):
        try:
            call()
        except ValueError as e:
            assert str(e).endswith(".")


@pytest.mark.parametrize("value, message", [
    (True, "got True"), (float("nan"), "got nan"), (float("inf"), "got inf"), (2 ** 70, "whole number"),
    ("7", "got '7'"), (None, "but it is empty"), ("", "but it is empty"),
])
def test_seed_and_walk_checks_refuse_bools_nan_and_text(tiny_checkpoint, value, message):
    explorer = app.load_explorer(tiny_checkpoint)
    with pytest.raises(ValueError, match=message):
        explorer.face(value, OFF)
    with pytest.raises(ValueError, match="frames"):
        explorer.walk(0, 1, value, OFF)
    with pytest.raises(ValueError, match="t must be between"):
        explorer.interpolate(0, 1, value, OFF)


# ---- through the server ----

@pytest.mark.parametrize("api_name, kwargs, message", [
    ("/generate", dict(seed="abc", truncation=OFF), "seed must be a whole number from 0 to"),
    ("/generate", dict(seed=None, truncation=OFF), "seed must be a whole number"),
    ("/generate", dict(seed=True, truncation=OFF), "seed must be a whole number.*got True"),
    ("/generate", dict(seed=10 ** 40, truncation=OFF), "seed must be a whole number from 0 to 2147483647"),
    ("/generate", dict(seed=-1, truncation=OFF), "seed must be a whole number from 0 to 2147483647, got -1"),
    ("/generate", dict(seed=1, truncation=0.1), "truncation must be between 0.2 and 3.0"),
    ("/generate", dict(seed=1, truncation="x"), "truncation must be between 0.2 and 3.0"),
    ("/generate", dict(seed=1, truncation=[1]), "truncation must be between"),
    ("/attention", dict(seed=1, truncation=OFF, x="a", y=0), "x must be a pixel coordinate"),
    ("/attention", dict(seed=1, truncation=OFF, x=0, y=None), "y must be a pixel coordinate"),
    ("/attention", dict(seed=1, truncation=OFF, x=10 ** 40, y=0), "x must be a pixel coordinate"),
    ("/grid", dict(seed=1, count=10 ** 9, truncation=OFF), "1 to 64 faces, got 1000000000"),
    ("/grid", dict(seed=1, count="many", truncation=OFF), "1 to 64 faces"),
    ("/grid", dict(seed=1, count=False, truncation=OFF), "1 to 64 faces"),
    ("/interpolate", dict(seed_a=1, seed_b=2, t={"a": 1}, truncation=OFF, method="linear"), "t must be between 0"),
    ("/interpolate", dict(seed_a=1, seed_b="b", t=0.5, truncation=OFF, method="linear"), "seed must be"),
    ("/walk", dict(seed_a=1, seed_b=2, frames=10 ** 6, truncation=OFF, method="linear"), "2 to 32 frames"),
    ("/interpolate", dict(seed_a=1, seed_b=2, t=1.5, truncation=OFF, method="linear"), "t must be between 0"),
    ("/walk", dict(seed_a=1, seed_b=2, frames="3", truncation=OFF, method="linear"), "2 to 32 frames"),
    ("/walk", dict(seed_a=1, seed_b=2, frames=3, truncation=OFF, method=None), "interpolation must be one of"),
    ("/walk", dict(seed_a=1, seed_b=2, frames=3, truncation=OFF, method=5), "interpolation must be one of.*got 5"),
    ("/walk", dict(seed_a=1, seed_b=2, frames=3, truncation=OFF, method="cubic"), "spherical, linear, got 'cubic'"),
    ("/attention", dict(seed=1, truncation=OFF, x=1.5, y=0), "x must be a pixel coordinate.*whole number.*got 1.5"),
])
def test_bad_api_values_get_the_message_that_names_the_fix(client, api_name, kwargs, message):
    with pytest.raises(AppError, match=message) as error:
        client.predict(api_name=api_name, **kwargs)
    assert GENERIC not in str(error.value) and "Traceback" not in str(error.value)


def test_refused_api_values_leave_no_traceback_in_the_server_log(app_server):
    """A refusal is the caller's mistake, not the server's: it is answered, and the log stays quiet."""
    url, log = app_server
    before = log.stat().st_size  # the log is the whole session's: only this test's part is read
    client = Client(url, verbose=False)
    for api_name, kwargs in [("/walk", dict(seed_a=1, seed_b=2, frames=3, truncation=OFF, method="cubic")),
                             ("/interpolate", dict(seed_a=1, seed_b=2, t=0.5, truncation=OFF, method=7)),
                             ("/attention", dict(seed=1, truncation=OFF, x=1.5, y=0)),
                             ("/generate", dict(seed=-1, truncation=OFF))]:
        with pytest.raises(AppError):
            client.predict(api_name=api_name, **kwargs)
    client.predict(seed=1, truncation=OFF, api_name="/generate")  # answered after the refusals, so they are logged
    with open(log, "rb") as f:
        f.seek(before)
        assert b"Traceback" not in f.read()


def call_raw(app_url, api_name, body: str) -> tuple[str, dict]:
    """(event, data) of one call over Gradio's HTTP API with a hand-written JSON body."""
    base = f"{app_url}gradio_api/call/{api_name}"
    started = httpx.post(base, content=body, headers={"content-type": "application/json"}, timeout=30)
    started.raise_for_status()
    event = data = None
    with httpx.stream("GET", f"{base}/{started.json()['event_id']}", timeout=30) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("error", "complete"):
                data = json.loads(line.split(":", 1)[1])
                break
    return event, data


@pytest.mark.parametrize("api_name, args, message", [
    ("generate", "[NaN, 3.0]", "seed must be a whole number.*got nan"),
    ("generate", "[1, Infinity]", "truncation must be between.*got inf"),
    ("generate", "[1, NaN]", "truncation must be between.*got nan"),
    ("attention", "[1, 3.0, NaN, 0]", "x must be a pixel coordinate.*got nan"),
    ("attention", "[1, 3.0, 0, -Infinity]", "y must be a pixel coordinate.*got -inf"),
    ("grid", "[1, NaN, 3.0]", "1 to 64 faces"),
    ("interpolate", '[1, 2, NaN, 3.0, "linear"]', "t must be between 0"),
    ("walk", '[1, 2, Infinity, 3.0, "linear"]', "2 to 32 frames"),
])
def test_nan_and_inf_over_raw_http_get_a_message(app_url, api_name, args, message):
    event, data = call_raw(app_url, api_name, '{"data": %s}' % args)
    assert event == "error" and data is not None
    assert data["error"] and GENERIC not in data["error"]
    assert re.search(message, data["error"]), data["error"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(ENDPOINTS), st.lists(JSON_ANY, min_size=5, max_size=5))
def test_random_api_values_answer_or_get_a_clear_message(client, api_name, values):
    n = {"generate": 2, "attention": 4, "grid": 3, "interpolate": 5, "walk": 5}[api_name]
    try:
        client.predict(*values[:n], api_name=f"/{api_name}")
    except AppError as e:
        assert str(e) and GENERIC not in str(e) and "Traceback" not in str(e)


def test_the_server_still_answers_a_good_request_after_the_bad_ones(client):
    # Module order runs this after every bad request above.
    with Image.open(client.predict(seed=3, truncation=0.7, api_name="/generate")) as face:
        assert face.size == (SIZE * explore.UPSCALE, SIZE * explore.UPSCALE)
    strip, _, gif = client.predict(seed_a=1, seed_b=2, frames=2, truncation=OFF, method="linear", api_name="/walk")
    assert Path(gif).is_file()


# ---- what the server exposes ----

@pytest.mark.parametrize("path", ["/etc/passwd", str(ROOT / "app.py"), "app.py", "../app.py",
                                  "/etc/../etc/passwd", str(ROOT / "sagan" / "explore.py")])
def test_the_file_route_serves_no_file_outside_gradios_cache(app_url, path):
    response = httpx.get(f"{app_url}gradio_api/file={path}", timeout=30)
    assert response.status_code in (403, 404)
    assert "root:" not in response.text and "def build_demo" not in response.text
    assert "import" not in response.text


def test_the_file_route_refuses_the_checkpoint(app_url, tiny_checkpoint):
    response = httpx.get(f"{app_url}gradio_api/file={tiny_checkpoint}", timeout=30)
    assert response.status_code in (403, 404) and len(response.content) < 1000


def test_generated_outputs_are_served(app_url):
    event, data = call_raw(app_url, "generate", '{"data": [5, 3.0]}')
    assert event == "complete"
    url = data[0]["url"]
    assert "/gradio_api/file=" in url
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


def test_uploads_are_refused(app_url):
    response = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("x.txt", b"hello")}, timeout=30)
    assert response.status_code == 403 and "no uploads" in response.text


FILE_LIKE = {"file", "files", "image", "gallery", "video", "audio", "uploadbutton", "model3d",
             "imageeditor", "multimodaltextbox", "annotatedimage", "imageslider", "dataframe"}


def test_no_component_takes_a_file(app_url, demo):
    for config in (httpx.get(f"{app_url}config", timeout=30).json(), demo.config):
        inputs = {i for dep in config["dependencies"] for i in dep["inputs"]}
        for component in config["components"]:
            if component["type"] in FILE_LIKE:
                assert component["props"].get("interactive") is False, component["type"]
                assert component["id"] not in inputs, component["type"]


def test_main_never_opens_a_share_link_nor_advises_one(monkeypatch, tiny_checkpoint, capsys):
    launched = {}

    def launch(self, **kwargs):
        launched.update(kwargs)
        self.server = SimpleNamespace(should_exit=True)  # stopped at once
        return None, f"http://{kwargs['server_name']}:{kwargs['server_port']}/", None
    monkeypatch.setenv("GRADIO_SHARE", "True")   # an explicit share=False must win over this
    monkeypatch.setattr(gr.Blocks, "launch", launch)
    app.main(["--checkpoint", str(tiny_checkpoint), "--port", "7999"])
    assert launched["share"] is False and launched["server_name"] == "127.0.0.1"
    assert not launched.get("allowed_paths")
    assert os.environ["GRADIO_SHARE"] == "True"
    # Gradio's start-up text would advise share=True in launch(), which users of this CLI never call.
    assert launched["quiet"] is True
    assert capsys.readouterr().out == "Running on http://127.0.0.1:7999/ (Ctrl-C to stop)\n"


def test_a_port_that_cannot_be_opened_is_one_line(monkeypatch, tiny_checkpoint, capsys):
    def port_taken(self, **kwargs):
        raise OSError(f"Cannot find empty port in range: {kwargs['server_port']}-{kwargs['server_port']}.")
    monkeypatch.setattr(gr.Blocks, "launch", port_taken)
    with pytest.raises(SystemExit) as exit_:
        app.main(["--checkpoint", str(tiny_checkpoint), "--port", "7999"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: cannot listen on 127.0.0.1:7999") and "--port PORT" in err
    assert "launch()" not in err  # Gradio's advice is for code that calls launch(), not for this CLI


def test_a_stop_while_starting_closes_the_app_quietly(monkeypatch, tiny_checkpoint, capsys):
    """A SIGTERM (made KeyboardInterrupt) that lands inside launch() ended in a traceback."""
    closed = []

    def stopped_while_starting(self, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(gr.Blocks, "launch", stopped_while_starting)
    monkeypatch.setattr(gr.Blocks, "close", lambda self: closed.append(self))
    try:
        app.main(["--checkpoint", str(tiny_checkpoint)])
    except KeyboardInterrupt:  # uncaught, it would stop pytest itself
        pytest.fail("the stop escaped main() as a KeyboardInterrupt, which Python prints as a traceback")
    assert len(closed) == 1 and capsys.readouterr() == ("", "")


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_port_out_of_range_is_refused_by_the_parser(port, capsys):
    with pytest.raises(SystemExit):
        app.parse_args(["--port", port])
    assert f"argument --port: '{port}' is not a port number" in capsys.readouterr().err


def test_refused_inputs_reach_the_user_but_leave_no_traceback_in_the_server_log():
    @app.user_errors
    def refuse(seed):
        raise ValueError(f"seed must be a whole number, got {seed}")
    with pytest.raises(gr.Error, match="seed must be a whole number, got 1.5") as refused:
        refuse(1.5)
    assert refused.value.print_exception is False


EDIT_ENDPOINTS = ("edit", "edit_face", "edit_attention", "edit_grid", "edit_walk", "edit_nearby")


@pytest.mark.parametrize("through_gradio", [True, False], ids=["preprocessed", "raw"])
@pytest.mark.parametrize("api_name", EDIT_ENDPOINTS)
def test_edit_callbacks_answer_or_refuse_with_a_message(demo, api_name, through_gradio):
    """The Edit tab's endpoints, given mostly wrong values (a steps text among them: any JSON value)."""
    fn = endpoint(demo, api_name)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(ANY, st.just("3:0.5")), min_size=len(fn.inputs), max_size=len(fn.inputs)))
    def check(values):
        try:
            if through_gradio:
                values = [block.preprocess(v) for block, v in zip(fn.inputs, values)]
            result = fn.fn(*values)
        except gr.Error as e:
            assert str(e) and "Traceback" not in str(e)
            return
        paths = [result] if isinstance(result, str) else [item[0] if isinstance(item, tuple) else item
                                                           for item in result]
        assert paths and all(Path(p).is_file() for p in paths)

    check()
