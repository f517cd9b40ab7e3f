"""The app as an MCP server (--mcp): an MCP client lists the named endpoints as tools and calls them;
without the flag no MCP route is served."""
from __future__ import annotations

import asyncio
import base64
import io
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

import app
from sagan import explore

from conftest import serve_app

NAMED_ENDPOINTS = {"generate", "attention", "grid", "interpolate", "walk"}


@pytest.fixture(scope="module")
def mcp_url(tiny_checkpoint, tmp_path_factory):
    """The MCP endpoint of ``python app.py --mcp`` serving the tiny checkpoint on loopback."""
    log = tmp_path_factory.mktemp("mcp") / "app.log"
    with serve_app(log, ("--checkpoint", str(tiny_checkpoint), "--mcp")) as url:
        yield url + "gradio_api/mcp/"


def ask(url: str, calls: list[tuple[str, dict]]):
    """The tools an MCP client is offered at ``url``, and its results of ``calls`` (tool, arguments)."""
    async def session():
        async with httpx.AsyncClient(timeout=120) as http, streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(*streams[:2]) as client:
                await client.initialize()
                tools = (await client.list_tools()).tools
                return tools, [await client.call_tool(name, arguments) for name, arguments in calls]
    return asyncio.run(session())


def image_of(result) -> np.ndarray:
    data, = [item.data for item in result.content if item.type == "image"]
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image.convert("RGB"))


def test_an_mcp_client_lists_the_named_endpoints_and_draws_the_apps_face(mcp_url, tiny_checkpoint):
    tools, (face, error) = ask(mcp_url, [("generate", {"seed": 9, "truncation": 0.8}),
                                         ("generate", {"seed": -1, "truncation": 0.8})])
    names = {tool.name for tool in tools}
    assert NAMED_ENDPOINTS <= names and "attention_of_typed_query" not in names  # api_name=False stays private
    generate, = [tool for tool in tools if tool.name == "generate"]
    assert set(generate.inputSchema["properties"]) == {"seed", "truncation"}
    # An assistant reads what a tool does and what each argument means from the callbacks' docstrings.
    assert "face of a seed" in generate.description
    assert "average face" in generate.inputSchema["properties"]["truncation"].get("description", "")
    assert not face.isError
    explorer = app.load_explorer(tiny_checkpoint)
    np.testing.assert_array_equal(image_of(face), explore.upscale(explorer.face(9, 0.8).face, explore.UPSCALE))
    assert error.isError and "seed" in error.content[0].text  # the app's message, not a traceback


def test_without_the_flag_no_mcp_route_is_served(app_url):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(app_url + "gradio_api/mcp/", timeout=30)
    assert e.value.code == 404


def test_the_flag_is_off_unless_given_or_asked_for_by_gradios_variable(monkeypatch):
    monkeypatch.delenv("GRADIO_MCP_SERVER", raising=False)
    assert not app.parse_args([]).mcp and app.parse_args(["--mcp"]).mcp
    monkeypatch.setenv("GRADIO_MCP_SERVER", "true")
    assert app.parse_args([]).mcp and not app.parse_args(["--no-mcp"]).mcp


def test_without_the_extra_the_flag_is_refused_with_the_install_to_run(monkeypatch, capsys):
    find_spec = app.importlib.util.find_spec
    monkeypatch.setattr(app.importlib.util, "find_spec",
                        lambda name, *args: None if name == "mcp" else find_spec(name, *args))
    with pytest.raises(SystemExit) as e:
        app.main(["--mcp"])
    assert e.value.code == 2
    assert 'pip install -r requirements.txt (it lists "gradio[mcp]")' in capsys.readouterr().err
