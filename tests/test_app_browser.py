"""The app in a real browser: Debian's headless Chromium driven by Playwright."""
from __future__ import annotations

import shutil

import pytest

from sagan import explore

import playwright.sync_api as sync_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SIZE = 32
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page(app_url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def image_sources(page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("images => images.map(i => i.src)")


def wait_for_change(page, selector: str, before: list[str], count: int) -> list[str]:
    """The image URLs under ``selector`` once there are ``count`` of them, different from ``before``."""
    page.wait_for_function(
        """([selector, before, count]) => {
            const now = [...document.querySelectorAll(selector)].map(i => i.src);
            return now.length === count && now.every(s => s) && JSON.stringify(now) !== JSON.stringify(before);
        }""", arg=[selector, before, count])
    return image_sources(page, selector)


def test_seed_slider_and_a_click_update_the_attention_maps(page):
    face_sel, maps_sel = "#face img", "#attention img"
    face = wait_for_change(page, face_sel, [], 1)
    maps = wait_for_change(page, maps_sel, [], 2)

    seed = page.locator("#seed input[type=range]")
    seed.focus()
    page.keyboard.press("ArrowRight")
    face = wait_for_change(page, face_sel, face, 1)
    maps = wait_for_change(page, maps_sel, maps, 2)
    assert page.locator("#seed input[type=number]").input_value() == "1"

    # The centre of native pixel (5, 26), wherever and however large the face is laid out.
    image = page.locator(face_sel)
    box = image.bounding_box()
    natural = image.evaluate("i => i.naturalWidth")
    assert natural == SIZE * explore.UPSCALE
    scale = box["width"] / natural
    x, y = 5, 26
    image.click(position={"x": (x + 0.5) * explore.UPSCALE * scale, "y": (y + 0.5) * explore.UPSCALE * scale})
    wait_for_change(page, maps_sel, maps, 2)
    assert page.locator("#query-x input").input_value() == str(x)
    assert page.locator("#query-y input").input_value() == str(y)
    assert image_sources(page, face_sel) == face

    page.get_by_role("button", name="random seed").click()
    wait_for_change(page, face_sel, face, 1)
    assert page.locator("#seed input[type=number]").input_value() != "1"


def toast_text(page) -> str:
    return "\n".join(page.locator('[data-testid="toast-body"]').all_inner_texts())


def test_a_bad_seed_is_reported_once_and_an_emptied_query_box_not_at_all(page):
    box = page.locator("#query-x input")
    box.fill("")
    box.press("Tab")
    page.wait_for_timeout(1500)  # time for a refusal to arrive, had the empty box been sent as a query
    assert "must be" not in toast_text(page)

    seed = page.locator("#seed input[type=number]")
    seed.fill("-5")
    seed.press("Enter")
    page.wait_for_function("() => document.body.innerText.includes('seed must be a whole number')")
    page.wait_for_timeout(1500)  # the maps' request, were it sent too, would have answered by now
    assert toast_text(page).count("seed must be a whole number") == 1
