"""The README's front matter, which is the Hugging Face Space's configuration, agrees with the code:
the app file exists, the Gradio version is the one requirements.txt installs, and the card's fields
hold values the Hub's configuration reference lists."""
import re

import yaml

from conftest import ROOT

HUB_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))


def test_the_space_runs_the_app_with_the_gradio_requirements_txt_installs():
    config = front_matter()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[\w,]+\])?==([^\s#]+)", (ROOT / "requirements.txt").read_text(),
                           re.M))  # name, extras, version
    assert config["sdk"] == "gradio" and config["sdk_version"] == pins["gradio"]
    assert (ROOT / config["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+", str(config["python_version"]))


def test_the_hub_card_fields_are_ones_it_displays():
    config = front_matter()
    assert {config["colorFrom"], config["colorTo"]} <= HUB_COLORS
    assert config["title"] and config["short_description"] and "\n" not in config["short_description"]
