"""The app in a real browser: Debian's headless Chromium driven by Playwright."""
from __future__ import annotations

import io
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

import app
from sagan import editing, explore

import playwright.sync_api as sync_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SIZE = 32
MAPS = 2  # a strip of three views for each of the tiny generator's two layers
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class QueueTraffic:
    """A page's requests to Gradio's queue, as the server answers them: each event the page sends
    joins the queue (queue/join), and the server ends the page's stream of answers (queue/data) once
    it has answered every event it holds for the page."""

    def __init__(self, page):
        self.open, self.joins, self.finished, self.last_join, self.last_answers = set(), 0, 0, 0, 0
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    def started(self, request):
        if "/queue/join" in request.url or "/queue/data" in request.url:
            self.open.add(request)
            self.joins += "/queue/join" in request.url

    def ended(self, request):
        if request in self.open:
            self.open.discard(request)
            self.finished += 1
            if "/queue/join" in request.url:
                self.last_join = self.finished
            else:
                self.last_answers = self.finished

    def answered(self) -> bool:
        """Nothing in flight, and a stream of answers ended after the last event joined."""
        return not self.open and (self.joins == 0 or self.last_answers > self.last_join)


TRAFFIC: dict = {}  # page -> its QueueTraffic, recorded from the page's opening


def open_page(browser, url: str, width: int = 1280, height: int = 1100):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    TRAFFIC[page] = QueueTraffic(page)
    page.goto(url)
    return page


def wait_until_answered(page) -> None:
    """Until the server has answered every event the page sent, and the page has drawn the answers
    without sending another: where a check says that nothing changes, a late answer has then landed
    however busy the machine is, instead of after a fixed wait."""
    traffic, deadline = TRAFFIC[page], time.monotonic() + TIMEOUT_MS / 1000
    while True:
        while not traffic.answered():
            assert time.monotonic() < deadline, f"the server did not answer the page: {len(traffic.open)} in flight"
            page.wait_for_timeout(50)
        joins = traffic.joins
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        if traffic.answered() and traffic.joins == joins:
            return


@pytest.fixture(scope="module")
def page(browser, app_url):
    page = open_page(browser, app_url)
    yield page
    page.close()


def image_sources(page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("images => images.map(i => i.src)")


def wait_for_change(page, selector: str, before: list[str], count: int) -> list[str]:
    """The image URLs under ``selector`` once there are ``count`` of them, different from ``before``,
    and decoded: until then an image has no size, and is laid out as 0x0. (Gradio's maps load lazily:
    one far below the first screen, on a phone, loads only once scrolled to.)"""
    page.wait_for_function(
        """([selector, before, count]) => {
            const images = [...document.querySelectorAll(selector)], now = images.map(i => i.src);
            return now.length === count && now.every(s => s) && JSON.stringify(now) !== JSON.stringify(before)
                && images.every(i => i.complete && i.naturalWidth > 0
                                     || i.loading === 'lazy' && i.getBoundingClientRect().top > 2 * innerHeight);
        }""", arg=[selector, before, count])
    return image_sources(page, selector)


def test_seed_slider_and_a_click_update_the_attention_maps(page):
    face_sel, maps_sel = "#face img", "#attention img"
    face = wait_for_change(page, face_sel, [], 1)
    maps = wait_for_change(page, maps_sel, [], MAPS)

    seed = page.locator("#seed input[type=range]")
    seed.focus()
    page.keyboard.press("ArrowRight")
    face = wait_for_change(page, face_sel, face, 1)
    maps = wait_for_change(page, maps_sel, maps, MAPS)
    assert page.locator("#seed input[type=number]").input_value() == "1"

    x, y = 5, 26
    click_pixel(page, x, y)
    wait_for_change(page, maps_sel, maps, MAPS)
    assert page.locator("#query-x input").input_value() == str(x)
    assert page.locator("#query-y input").input_value() == str(y)
    assert image_sources(page, face_sel) == face

    page.get_by_role("button", name="random seed").click()
    wait_for_change(page, face_sel, face, 1)
    assert page.locator("#seed input[type=number]").input_value() != "1"


def shown_images(page, selector: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))
            for src in image_sources(page, selector)]


def click_pixel(page, x: int, y: int) -> None:
    """Click the centre of native pixel (x, y), wherever and however large the face is laid out."""
    image = page.locator("#face img")
    # A new face's <img> has its src at once but no size until it is decoded: measured then, the
    # click landed on pixel (0, 0).
    image.evaluate("i => i.decode()")
    width, natural = image.evaluate("i => [i.getBoundingClientRect().width, i.naturalWidth]")
    assert natural == SIZE * explore.UPSCALE and width > 0
    scale = width / natural
    image.click(position={"x": (x + 0.5) * explore.UPSCALE * scale, "y": (y + 0.5) * explore.UPSCALE * scale})


def test_two_distant_clicks_show_different_maps_in_three_explained_views(browser, app_url, tiny_checkpoint):
    """The tiny generator's attention depends on the clicked pixel (its figure is measured first): two clicks
    in opposite corners must show different maps, away from the marks of either click, in the first two
    views of each layer's strip, and the same mean map in the third."""
    figures = app.load_explorer(tiny_checkpoint).figures()
    assert max(layer["mi_bits"] for layer in figures.values()) > 0.5, figures
    page = open_page(browser, app_url)
    try:
        maps = wait_for_change(page, "#attention img", [], MAPS)
        shown = []
        for x, y in ((2, 2), (SIZE - 3, SIZE - 3)):
            click_pixel(page, x, y)
            maps = wait_for_change(page, "#attention img", maps, MAPS)
            shown.append(shown_images(page, "#attention img"))
        display, step = SIZE * explore.map_scale(SIZE), SIZE * explore.map_scale(SIZE) + explore.STRIP_GAP
        away = np.ones((display, display), bool)  # off the ring and the query cell of either click
        away[:display * 3 // 16, :display * 3 // 16] = away[-display * 3 // 16:, -display * 3 // 16:] = False
        for a, b in zip(*shown):
            assert a.shape == b.shape == (display, 3 * display + 2 * explore.STRIP_GAP, 3)
            for view in range(3):
                panel_a, panel_b = (strip[:, view * step:view * step + display] for strip in (a, b))
                difference = np.abs(panel_a.astype(int) - panel_b.astype(int))[away].mean()
                assert difference == 0 if view == 2 else difference > 2, (view, difference)
        captions = page.locator("#attention .caption-label").all_inner_texts()
        assert [c.split(" ·")[0] for c in captions] == ["8x8, keys 4x4", "16x16, keys 8x8"]
        assert all("depends on the clicked pixel by" in c for c in captions)
        legend = page.locator("#views-legend").inner_text()
        for view in ("Where this pixel looks", "What this pixel looks at more than the average pixel does",
                     "The layer's mean map"):
            assert view in legend
    finally:
        page.close()


class SlowFirstMaps(explore.Explorer):
    """The first query's maps take seconds, so a later click's maps, which take milliseconds, are
    answered first."""

    def __init__(self, g, first_query):
        super().__init__(g)
        self.first_query, self.first_answered = first_query, threading.Event()

    def attention(self, seed, truncation, x, y):
        if (x, y) != self.first_query:
            return super().attention(seed, truncation, x, y)
        time.sleep(3)
        try:
            return super().attention(seed, truncation, x, y)
        finally:
            self.first_answered.set()


class SlowSeven(explore.Explorer):
    """Seed 7's face takes seconds."""

    def face(self, seed, truncation):
        if seed == 7:
            time.sleep(3)
        return super().face(seed, truncation)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_waiting_until_the_server_answered_outlasts_a_slow_answer(browser, tiny_checkpoint):
    """What the checks that nothing changes wait for: here an answer that takes 3 s has landed, and
    the maps that follow it too, when the wait ends."""
    demo = app.build_demo(SlowSeven(app.load_explorer(tiny_checkpoint).g))
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, ssr_mode=False, quiet=True)
    page = open_page(browser, url)
    try:
        maps = wait_for_change(page, "#attention img", [], 2)
        face = image_sources(page, "#face img")
        seed = page.locator("#seed input[type=number]")
        seed.fill("7")
        seed.press("Enter")
        asked = time.monotonic()
        wait_until_answered(page)
        assert time.monotonic() - asked > 2.5
        assert image_sources(page, "#face img") != face and image_sources(page, "#attention img") != maps
    finally:
        page.close()
        demo.close()


# Served from this process, Gradio's queue shows its own pandas deprecations (a subprocess's are not seen).
@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_the_maps_show_the_last_query_when_an_earlier_one_answers_later(browser, tiny_checkpoint):
    centre = (SIZE // 2, SIZE // 2)
    explorer = SlowFirstMaps(app.load_explorer(tiny_checkpoint).g, centre)
    demo = app.build_demo(explorer)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True,
                            ssr_mode=False, quiet=True)
    page = open_page(browser, url)
    try:
        wait_for_change(page, "#face img", [], 1)  # its maps (the centre's) are now being made
        x, y = 5, 26
        click_pixel(page, x, y)
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not explorer.first_answered.wait(0.1):
            assert time.monotonic() < deadline, "the first query's maps were never asked for"
            page.wait_for_timeout(100)
        # The slow answer is out; the click's must come after it and stay, however busy the machine is.
        expected = [overlay for overlay, _ in explorer.attention(0, explore.TRUNCATION_OFF, x, y)]

        def shows_the_click() -> bool:
            shown = shown_images(page, "#attention img")
            return len(shown) == len(expected) and all(np.array_equal(a, b) for a, b in zip(shown, expected))
        while not shows_the_click():
            assert time.monotonic() < deadline, "the maps never showed the clicked pixel after the slow answer"
            page.wait_for_timeout(200)
        wait_until_answered(page)  # nothing answered later may replace them
        assert shows_the_click() and page.locator("#query-x input").input_value() == str(x)
    finally:
        page.close()
        demo.close()


def test_a_coordinate_typed_right_after_a_click_stays_while_the_server_is_busy(browser, app_url, tiny_checkpoint):
    """Mapped to a pixel on the server, a click's answer came back after a coordinate typed meanwhile and
    replaced it. Here the server is 'busy': every request to its queue is held until both inputs are in."""
    page = open_page(browser, app_url)
    try:
        wait_for_change(page, "#attention img", [], MAPS)
        held, busy = [], [True]

        def hold(route):
            held.append(route) if busy[0] else route.continue_()
        page.route("**/queue/join*", hold)
        click_pixel(page, 3, 4)
        box = page.locator("#query-x input")
        box.fill("20")
        box.press("Enter")
        page.wait_for_timeout(300)
        busy[0] = False
        assert held  # the typed query's maps, at least, were asked for while the server was busy
        for route in held:
            route.continue_()
        expected = [overlay for overlay, _ in
                    app.load_explorer(tiny_checkpoint).attention(0, explore.TRUNCATION_OFF, 20, 4)]
        page.wait_for_function("""(count) => {
            const images = [...document.querySelectorAll('#attention img')];
            return images.length === count && images.every(i => i.complete && i.naturalWidth > 0);
        }""", arg=len(expected))
        wait_until_answered(page)  # a late answer would have replaced the typed query by now, had one been asked for
        assert (box.input_value(), page.locator("#query-y input").input_value()) == ("20", "4")
        shown = shown_images(page, "#attention img")
        assert len(shown) == len(expected) and all(np.array_equal(a, b) for a, b in zip(shown, expected))
    finally:
        page.close()


class SlowInterpolation(explore.Explorer):
    """Once ``slow`` is set, the face at t takes seconds, so a walk asked for meanwhile is answered first."""

    def __init__(self, g):
        super().__init__(g)
        self.slow, self.answered = threading.Event(), threading.Event()

    def interpolate(self, *args):
        if not self.slow.is_set():
            return super().interpolate(*args)
        time.sleep(3)
        try:
            return super().interpolate(*args)
        finally:
            self.answered.set()


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_a_walk_made_while_the_face_at_t_renders_is_not_cleared_when_that_face_arrives(browser, tiny_checkpoint):
    """Seed B's change clears the walk; that clearing waited for the face at t, a server listener of the
    same change added before it, and then wiped a walk made meanwhile."""
    explorer = SlowInterpolation(app.load_explorer(tiny_checkpoint).g)
    demo = app.build_demo(explorer)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, ssr_mode=False, quiet=True)
    page = open_page(browser, url)
    try:
        page.get_by_role("tab", name="Interpolation").click()
        wait_for_change(page, "#between img", [], 1)
        explorer.slow.set()
        page.locator("#seed-b input[type=range]").focus()
        page.keyboard.press("ArrowRight")  # seed B 1 -> 2: its face at t now takes 3 s
        page.get_by_role("button", name="make walk").click()
        wait_for_change(page, "#walk-strip img", [], 1)
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not explorer.answered.wait(0.1):
            assert time.monotonic() < deadline, "the face at t was never asked for"
            page.wait_for_timeout(100)
        wait_until_answered(page)  # a clearing that followed the face at t would have landed by now
        assert page.locator("#walk-strip img").count() == 1
    finally:
        page.close()
        demo.close()


def test_on_a_phone_each_map_is_full_width_with_its_whole_caption(browser, app_url):
    page = open_page(browser, app_url, width=390, height=844)
    try:
        wait_for_change(page, "#attention img", [], MAPS)
        layout = page.evaluate("""() => {
            const wrap = document.querySelector('#attention .grid-wrap');
            return {widths: [...document.querySelectorAll('#attention img')].map(i => i.getBoundingClientRect().width),
                    clipped: [...document.querySelectorAll('#attention .caption-label')].map(
                        c => c.scrollWidth > c.clientWidth),
                    scrolls: wrap.scrollHeight > wrap.clientHeight};
        }""")
        assert min(layout["widths"]) > 300 and layout["clipped"] == [False] * MAPS and not layout["scrolls"], layout
    finally:
        page.close()


def test_every_image_shown_has_alt_text(page):
    """The face, the image a visitor clicks, was announced to screen readers as a bare "button"."""
    wait_for_change(page, "#attention img", [], MAPS)
    shown = page.evaluate("() => [...document.querySelectorAll('img')].filter(i => i.offsetParent).map(i => i.alt)")
    assert len(shown) >= 3 and all(alt.strip() for alt in shown), shown
    assert "click a pixel" in page.locator("#face img").get_attribute("alt")


def test_the_title_and_bold_text_are_drawn_in_one_font(page):
    """Gradio's SemiBold file lacks most letters: headings mixed in a fallback font, letter by letter."""
    page.wait_for_selector("h1")
    # The file a heading asks for, loaded before its glyphs are read.
    page.evaluate("() => document.fonts.load('600 1em \"Source Sans Pro\"').then(() => true)")
    cdp = page.context.new_cdp_session(page)
    try:
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        cdp.send("CSS.enable")
        for selector in ("h1", "strong"):
            node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
            fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
            assert len(fonts) == 1 and fonts[0]["isCustomFont"], (selector, fonts)
    finally:
        cdp.detach()


def test_the_maps_box_ends_with_the_maps(page):
    """Gradio gave a gallery of height "auto" a box at least 450 px tall: 160 px of it were blank."""
    wait_for_change(page, "#attention img", [], MAPS)
    gap = page.evaluate("""() => {
        const wrap = document.querySelector('#attention .grid-wrap').getBoundingClientRect();
        const lowest = Math.max(...[...document.querySelectorAll('#attention .thumbnail-item')].map(
            i => i.getBoundingClientRect().bottom));  // a map and its caption
        return wrap.bottom - lowest;
    }""")
    assert 0 <= gap < 20, gap
    shown = page.evaluate("() => document.querySelector('#attention img').getBoundingClientRect().height")
    page.locator("#attention .thumbnail-item").first.click()  # a map enlarged: larger than the map, not smaller
    enlarged = page.locator("#attention .preview img[data-testid=detailed-image]")
    assert enlarged.evaluate("i => i.getBoundingClientRect().height") > shown
    page.keyboard.press("Escape")
    enlarged.wait_for(state="detached")


def test_on_a_phone_the_face_is_on_the_first_screen_and_a_tap_shows_its_maps_with_it(browser, app_url):
    """The about text and the controls pushed the face below a phone's first screen, and the maps a tap
    changed were a screen further down, out of sight."""
    page = open_page(browser, app_url, width=390, height=844)
    try:
        wait_for_change(page, "#attention img", [], MAPS)

        def in_view(selector: str) -> tuple[float, float]:  # the top's and the bottom's distances from the fold
            return page.evaluate("""(selector) => {
                const r = document.querySelector(selector).getBoundingClientRect();
                return [innerHeight - r.top, innerHeight - r.bottom];
            }""", selector)
        face_top, face_bottom = in_view("#face img")
        assert face_top > 0 and face_bottom > (face_bottom - face_top) / 2, (face_top, face_bottom)  # most of it
        assert in_view("#attention img")[1] < 0  # the first map ends below the first screen
        before = image_sources(page, "#attention img")
        click_pixel(page, 5, 9)
        wait_for_change(page, "#attention img", before, MAPS)
        assert in_view("#attention img")[1] >= 0 and in_view("#face img")[0] <= 844, page.evaluate("scrollY")
    finally:
        page.close()


@pytest.mark.parametrize("frames", [8, 32])
def test_on_a_phone_the_walk_strip_keeps_its_size_and_scrolls_below_its_buttons(browser, app_url, frames):
    """Shrunk to a phone's width, eight frames were 39 px tall (32 frames: 4 rows of 10 px), with the
    strip's buttons over the last ones."""
    page = open_page(browser, app_url, width=390, height=844)
    try:
        wait_for_change(page, "#face img", [], 1)
        page.get_by_role("tab", name="Interpolation").click()
        page.locator("#walk-frames input[type=number]").fill(str(frames))
        page.locator("#walk-frames input[type=number]").press("Enter")
        page.get_by_role("button", name="make walk").click()
        wait_for_change(page, "#walk-strip img", [], 1)
        layout = page.evaluate("""() => {
            const img = document.querySelector('#walk-strip img'), frame = img.parentElement;
            const r = img.getBoundingClientRect(), f = frame.getBoundingClientRect();
            return {shown: [r.width, r.height], natural: [img.naturalWidth, img.naturalHeight],
                    starts_at_frame: r.left === f.left, scrolls_to_end: frame.scrollWidth >= r.width};
        }""")
        rows = -(-frames // app.WALK_COLUMNS)
        assert layout["natural"][1] >= rows * SIZE * 2  # each row of frames is a face at twice its size
        assert layout["shown"] == layout["natural"] and layout["starts_at_frame"] and layout["scrolls_to_end"], layout
        assert_buttons_above_the_image(page, "#walk-strip")
    finally:
        page.close()


def assert_buttons_above_the_image(page, selector: str) -> None:
    """Gradio's icon buttons (download, fullscreen) of the image in ``selector`` end above the image."""
    layout = page.evaluate("""(selector) => ({
        button_bottoms: [...document.querySelectorAll(selector + ' button')]
            .filter(b => b.querySelector('svg')).map(b => b.getBoundingClientRect().bottom),
        image_top: document.querySelector(selector + ' img').getBoundingClientRect().top})""", selector)
    assert layout["button_bottoms"] and max(layout["button_bottoms"]) <= layout["image_top"], layout


def test_on_a_phone_the_grids_buttons_leave_its_top_right_face_in_view(browser, app_url):
    page = open_page(browser, app_url, width=390, height=844)
    try:
        wait_for_change(page, "#face img", [], 1)
        page.get_by_role("tab", name="Grid").click()
        page.get_by_role("button", name="show grid").click()
        wait_for_change(page, "#grid img", [], 1)
        assert_buttons_above_the_image(page, "#grid")
    finally:
        page.close()


@pytest.mark.parametrize("width, height", [(1280, 1100), (390, 844)])
def test_every_corner_pixel_of_the_face_takes_a_click_and_no_image_is_under_its_buttons(browser, app_url, width,
                                                                                        height):
    """The face's download button lay over its top-right pixels and took their clicks (the face at t's
    and the maps' buttons hid their corners too)."""
    page = open_page(browser, app_url, width=width, height=height)
    try:
        maps = wait_for_change(page, "#attention img", [], MAPS)
        image = page.locator("#face img")
        image.scroll_into_view_if_needed()
        for x, y in ((SIZE - 1, 0), (0, 0)):
            box = image.bounding_box()
            at = [box["x"] + (x + 0.5) * box["width"] / SIZE, box["y"] + (y + 0.5) * box["height"] / SIZE]
            on_top = page.evaluate("([x, y]) => document.elementFromPoint(x, y).outerHTML.slice(0, 80)", at)
            assert on_top.startswith("<img"), (x, y, on_top)
            page.mouse.click(*at)
            maps = wait_for_change(page, "#attention img", maps, MAPS)
            assert (page.locator("#query-x input").input_value(), page.locator("#query-y input").input_value()) \
                == (str(x), str(y))
        assert_buttons_above_the_image(page, "#face")
        assert_buttons_above_the_image(page, "#attention")
        page.get_by_role("tab", name="Interpolation").click()
        page.locator("#between img").wait_for()
        assert_buttons_above_the_image(page, "#between")
    finally:
        page.close()


def test_a_typed_truncation_renders_once_not_forever(page):
    """Two always_last listeners on the truncation slider made Gradio resend them without end once a
    typed value's box was left; the interpolation now follows the face instead."""
    joins = []

    def count(request):
        if "queue/join" in request.url:
            joins.append(time.monotonic())
    page.on("request", count)
    page.locator("#truncation input[type=number]").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("1.5")  # key by key, as a visitor types
    page.keyboard.press("Tab")
    # The renders of "1" and "1.5" end, however busy the machine: then the page falls quiet for good.
    deadline = time.monotonic() + 30
    while not joins or time.monotonic() - joins[-1] < 3:
        assert time.monotonic() < deadline, f"{len(joins)} requests in 30 s and still sending"
        page.wait_for_timeout(200)
    page.remove_listener("request", count)
    # Per value typed ("1", "1.5"): the face, its maps, the interpolation and the grid and walk
    # clearings, so a dozen or so; the loop sent about ten a second, for as long as it was watched.
    assert len(joins) <= 30, f"{len(joins)} requests for one typed value"


def test_a_grid_is_cleared_in_the_browser_when_its_face_count_changes_and_a_count_typed_before_a_click_shows(page):
    """Cleared through the server, a count typed just before a click could have its clearing answered
    after the grid, and wipe it."""
    page.get_by_role("tab", name="Grid").click()
    page.get_by_role("button", name="show grid").click()
    page.wait_for_function("() => document.querySelectorAll('#grid img').length === 1")
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "queue/join" in request.url else None)
    count = page.locator("#grid-count input[type=range]")
    count.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelectorAll('#grid img').length === 0")
    assert page.locator("#grid-count input[type=number]").input_value() == "17"
    wait_until_answered(page)
    assert sent == []  # cleared by the page itself, so nothing the server answers later can undo it
    page.locator("#grid-count input[type=number]").fill("0")  # raised to 1 when the click leaves the box
    page.get_by_role("button", name="show grid").click()
    page.wait_for_function("() => document.querySelectorAll('#grid img').length === 1")
    wait_until_answered(page)
    assert page.locator("#grid img").count() == 1
    assert page.locator("#grid-count input[type=number]").input_value() == "1"
    page.get_by_role("tab", name="Face & attention").click()


def test_a_typed_seed_is_kept_when_the_box_is_left(page):
    """The sliders spanned 0-9,999: a larger seed typed in the box was drawn, then clamped to 9,999 and
    drawn again as soon as the visitor clicked anything, the face included."""
    page.get_by_role("tab", name="Face & attention").click()
    face_sel = "#face img"
    face = image_sources(page, face_sel)
    seed = page.locator("#seed input[type=number]")
    seed.fill("123456")
    seed.press("Enter")
    face = wait_for_change(page, face_sel, face, 1)
    click_pixel(page, 3, 4)  # the box loses focus
    page.wait_for_function("() => document.querySelector('#query-x input').value === '3'")
    wait_until_answered(page)  # a clamped seed's face would have arrived by now, had one been asked for
    assert seed.input_value() == "123456"
    assert image_sources(page, face_sel) == face


def toast_text(page) -> str:
    return "\n".join(page.locator('[data-testid="toast-body"]').all_inner_texts())


def test_a_bad_seed_is_reported_once_and_an_emptied_query_box_not_at_all(page):
    box = page.locator("#query-x input")
    box.fill("")
    box.press("Tab")
    wait_until_answered(page)  # a refusal would have arrived by now, had the empty box been sent as a query
    assert "must be" not in toast_text(page)

    seed = page.locator("#seed input[type=number]")
    seed.fill("-5")
    seed.press("Enter")
    page.wait_for_function("() => document.body.innerText.includes('seed must be a whole number')")
    wait_until_answered(page)  # the maps' request, were it sent too, would have answered by now
    assert toast_text(page).count("seed must be a whole number") == 1


def test_the_grid_and_interpolation_tabs_show_their_default_grid_and_walk_on_load(browser, app_url):
    """The Interpolation tab opened with an empty strip, GIF and file box until "make walk" was pressed, the
    Grid tab with an empty box until "show grid"."""
    page = open_page(browser, app_url)
    try:
        page.get_by_role("tab", name="Interpolation").click()
        wait_for_change(page, "#walk-strip img", [], 1)
        page.wait_for_function("() => document.body.innerText.includes('walk-0-1-8-3-spherical')")  # its file
        page.get_by_role("tab", name="Grid").click()
        wait_for_change(page, "#grid img", [], 1)
    finally:
        page.close()


def test_a_direction_slider_edits_the_face_a_nearby_face_becomes_it_and_reset_undoes_both(browser, app_url,
                                                                                            tiny_checkpoint):
    editor = editing.Editor(app.load_explorer(tiny_checkpoint))
    off = explore.TRUNCATION_OFF
    page = open_page(browser, app_url)

    def shows(amounts, steps="") -> bool:
        shown = shown_images(page, "#edit-face img")
        expected = explore.upscale(editor.face(0, off, steps, amounts).face, explore.UPSCALE)
        return len(shown) == 1 and np.array_equal(shown[0], expected)

    def wait_until_it_shows(amounts, steps=""):
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not shows(amounts, steps):
            assert time.monotonic() < deadline, f"the edited face never showed {amounts}, {steps!r}"
            page.wait_for_timeout(200)
    try:
        page.get_by_role("tab", name="Edit").click()
        face = wait_for_change(page, "#edit-face img", [], 1)
        wait_for_change(page, "#edit-grid img", [], 1)  # shown on load, as the nearby faces are
        nearby = wait_for_change(page, "#nearby img", [], editing.VARIATIONS)
        assert shows([0.0] * 8)
        slider = page.locator("#amount-2 input[type=range]")
        slider.focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        assert page.locator("#amount-2 input[type=number]").input_value() == "0.5"
        edited = [0.0, 0.5] + [0.0] * 6
        face = wait_for_change(page, "#edit-face img", face, 1)
        wait_until_it_shows(edited)
        assert "amount_2=0.5" in page.locator("#edit-recipe").inner_text()
        nearby = wait_for_change(page, "#nearby img", nearby, editing.VARIATIONS)  # the new face's neighbours
        page.locator("#nearby .thumbnail-item").nth(2).click()
        page.wait_for_function("() => document.querySelector('#edit-steps textarea').value === '3:0.5'")
        wait_until_it_shows(edited, "3:0.5")
        maps = image_sources(page, "#edit-attention img")
        image = page.locator("#edit-face img")
        box = image.bounding_box()
        image.click(position={"x": 6.5 * box["width"] / SIZE, "y": 20.5 * box["height"] / SIZE})
        wait_for_change(page, "#edit-attention img", maps, 2)
        assert (page.locator("#edit-query-x input").input_value(),
                page.locator("#edit-query-y input").input_value()) == ("6", "20")
        page.locator("#edit-reset").click()
        page.wait_for_function("() => document.querySelector('#edit-steps textarea').value === ''")
        wait_until_it_shows([0.0] * 8)
    finally:
        page.close()
