"""Gradio app: generate anime faces with a trained SAGAN and look inside its self-attention.

    python app.py [--checkpoint PATH] [--host HOST] [--port PORT] [--mcp]

The checkpoint is --checkpoint, else $SAGAN_CHECKPOINT, else checkpoints/anime64.safetensors; the
address is --host/--port, else $GRADIO_SERVER_NAME/$GRADIO_SERVER_PORT, else 127.0.0.1:7860.
All compute lives in sagan.explore; this file only wires it to widgets and named API endpoints
(/generate, /attention, /grid, /interpolate, /walk; the Edit tab's /edit, /edit_face, /edit_attention,
/edit_grid, /edit_walk, /edit_nearby, computed in sagan.editing), all usable from gradio_client.

What the server exposes is kept to that: any bad input is answered with a message (never a
traceback), no share link, no upload route, and only Gradio's own cache of generated outputs is
served as files.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
import zlib
from pathlib import Path

# Gradio parses $GRADIO_SERVER_PORT as it is imported, and a value that is no number ends there in a
# traceback, before --port could override it: the value is taken out of its sight, for --port's parser.
SERVER_PORT = os.environ.pop("GRADIO_SERVER_PORT", None)

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from sagan import editing, explore  # noqa: E402
from sagan.checkpoint import CheckpointError, load_generator  # noqa: E402

# Next to this file, so `python path/to/app.py` works from any directory.
DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parent / "checkpoints" / "anime64.safetensors")
# Gradio lays a gallery of height "auto" out in a box of a fixed least height (450 px on a wide
# screen), whatever it holds: the maps' own height instead, with no blank band under them, except
# while a map is shown enlarged in that box (it would be smaller than the map itself), and all rows
# shown (it would otherwise scroll inside a box of fixed height). The walk's strip of frames was
# shrunk to a phone's width (39 px tall for 8 frames) under its own buttons: there, it keeps its
# own size (2x the faces) and scrolls sideways, below them. The grid's buttons hid its top-right face
# there: it starts below them. Everywhere, the face's download button took the clicks meant for the
# pixels under it, and the face at t's and the maps' buttons hid their corners: all start below them.
# A layer's strip of maps (one a row) has its caption, a sentence, under it, wrapped: not one clipped
# line over its bottom.
CSS = """
.pixelated img { image-rendering: pixelated; }
#face .image-container, #between .image-container { padding-top: 28px; }
#attention .grid-wrap { min-height: 0 !important; height: auto !important; max-height: none !important;
                        padding-top: 28px; }
#attention .gallery-container:has(.preview) .grid-wrap { min-height: 450px !important; }
#attention .thumbnail-item, #edit-attention .thumbnail-item { aspect-ratio: auto; height: auto; overflow: visible;
                                                             display: flex; flex-direction: column; }
#attention .thumbnail-item > img, #edit-attention .thumbnail-item > img { height: auto; }
#attention .caption-label, #edit-attention .caption-label { position: static; max-width: none; white-space: normal;
                                                           opacity: 1 !important; border: none; border-radius: 0; }
#edit-face .image-container, #edit-walk .image-container, #edit-grid .image-container { padding-top: 28px; }
#edit-attention .grid-wrap, #nearby .grid-wrap { min-height: 0 !important; height: auto !important; padding-top: 28px; }
#edit-attention .gallery-container:has(.preview) .grid-wrap { min-height: 450px !important; }
@media (max-width: 640px) {
  #walk-strip .image-container, #grid .image-container { padding-top: 40px; }
  #walk-strip .image-frame { overflow-x: auto; justify-content: flex-start; }
  #walk-strip img { height: auto; width: auto; max-width: none; }
}
"""
# Gradio 6.31 ships the default theme's Source Sans Pro SemiBold (600, its headings and bold text) as a
# 5 KB subset that lacks most letters, so a browser mixed in a fallback font letter by letter ("SAGAN"
# came out with small A's). Its complete Bold file is declared instead; weight 600 then resolves to it.
THEME = gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif",
                                "system-ui", "sans-serif"])
WALK_COLUMNS = 8  # frames per row of the walk's strip

LEAD = """
Anime faces drawn by a **Self-Attention GAN**. Pick a seed, then **click any pixel of the face** to
see where each of the generator's attention layers looks from there.
"""
# For a generator trained without attention layers (train.py --preset dcgan, or --g-attn ''): nothing to click for.
LEAD_WITHOUT_ATTENTION = """
Anime faces drawn by a GAN. **This generator has no self-attention layers** (it was trained without
them, e.g. with `--preset dcgan`), so there are no attention maps to show: load a SAGAN generator for those.
"""

ABOUT = """
**SAGAN** (Self-Attention GAN, Zhang et al. 2018) is a GAN whose generator has, besides
convolutions that only see a small neighbourhood, *self-attention* layers: every position of a
feature map computes a weighted average over **all** positions, so an eye can look at the other
eye, a strand of hair at the rest of the hair. Each attention layer's output is added to its input
scaled by a learned **gamma**; gamma starts at 0 and grows only as far as attention helps.

A **seed** picks the latent vector; the **truncation** trick redraws latent entries larger than the
threshold, which moves faces toward the generator's average face (for the bundled generator: more
alike; below about 1.5 also washed out, and less realistic by FID and precision). The slider's
top = no truncation.
"""

# A click on the face becomes its native pixel in the browser, where it happens: the query boxes then
# change at once, in the order of the user's clicks and keystrokes. (Mapped on the server, a click's
# answer could come back after a coordinate typed later and overwrite it.) A listener in the capture
# phase records the pixel before Gradio's select event reads it; a click beside the picture (its
# letterbox) records nothing, and the query stays.
RECORD_FACE_CLICKS = f"""() => {{
  document.addEventListener('click', (event) => {{
    const img = event.target instanceof Element && event.target.closest('#face img, #edit-face img');
    window.saganFaceClick = null;
    if (!img || !img.naturalWidth) return;
    const box = img.getBoundingClientRect();
    const scale = Math.max(img.naturalWidth / box.width, img.naturalHeight / box.height);  // object-fit: contain
    const left = box.left + (box.width - img.naturalWidth / scale) / 2;
    const top = box.top + (box.height - img.naturalHeight / scale) / 2;
    const x = Math.floor((event.clientX - left) * scale / {explore.UPSCALE});
    const y = Math.floor((event.clientY - top) * scale / {explore.UPSCALE});
    const size = img.naturalWidth / {explore.UPSCALE};
    if (x >= 0 && y >= 0 && x < size && y < size) window.saganFaceClick = [x, y];
  }}, true);
}}"""
QUERY_OF_FACE_CLICK = "(x, y) => window.saganFaceClick || [x, y]"

# On a phone the maps lie below the face, out of sight: a tap there brings the first map into view,
# as little as needed, so the face stays in view above it.
SHOW_MAPS_ON_A_PHONE = """() => {
  const map = document.querySelector('#attention .thumbnail-item');
  if (map && window.matchMedia('(max-width: 640px)').matches) map.scrollIntoView({block: 'nearest'});
}"""

# One sentence per view of explore.layer_views, in its order.
VIEWS_LEGEND = """
Each layer's strip, left to right:
1. **Where this pixel looks**: its row of the attention matrix, brightest = most attended.
2. **What this pixel looks at more than the average pixel does**: its row against the layer's mean row, red =
   more, blue = less, white = as much.
3. **The layer's mean map**: where this layer looks whatever you click.
"""

HOW_TO_READ = f"""
**Reading the maps.** Click a pixel of the face (or type its x, y). For each attention layer, a strip
of three maps: the first shows that pixel's row of the attention matrix over the face: how much weight the pixel's
position gives to every other position, brightest = most attended. The second divides that row by
the layer's mean row and shows the ratio on a log scale centred at 1 (white), red where the pixel looks
more than the average pixel does, blue where less, saturated at {2 ** explore.CONTRAST_BITS}x; the third
is that mean row, the same wherever you click. When the first and third look alike, the second is all
that tells clicks apart. The ringed dot is the clicked pixel and the white square its cell in that
layer's feature map. Each strip's caption names the layer's feature map and key grid (with pooled keys,
half as fine), its learned **γ** (gamma: a layer with γ near 0 barely changes the image, however
striking its map), the **peak** (how many times uniform attention the strongest weight is) and how
much the map depends on the clicked pixel over the faces of seeds 0-{explore.FACES - 1}: the mutual
information between the clicked and the attended position, in bits, at most log2 of the number of
keys. With several attention heads, every view shows the mean of the heads' rows.
"""


EDIT_LEAD = f"""
Change one thing about a face: each slider moves it along one of the generator's **semantic directions**
(SeFa: the latent directions its first layer stretches most, largest eigenvalue first). Amounts are in
standard deviations of the latent, up to ±{editing.MAX_AMOUNT:g}, the range measured to keep faces realistic.
Click the edited face to see its attention maps; pick a nearby face below to make it the current one.
"""
# What each of the bundled generator's top directions does from - to +, seen on direction x step sheets of
# many faces (bench/directions.py --sheets). Another generator's directions are only numbered: they are its own.
BUNDLED_EIGENVALUES = (2328.4, 1594.1, 1211.2, 761.7, 554.3, 356.0, 292.2, 179.7)
BUNDLED_DIRECTIONS = (
    "− warm, light hair (red, orange, blond) ↔ + dark, cool hair (black, blue-grey)",
    "− darker, saturated hair ↔ + paler, lighter hair; eyes turn red-pink",
    "− light hair (blond, pink, white) ↔ + dark blue, navy hair",
    "− red hair ↔ + silver-white, light blue hair",
    "− green, brown, blond hair ↔ + violet, purple, pink hair",
    "− violet, pink, blue hair ↔ + green, olive, peach hair",
    "− subtle: eye colour (red, green ↔ amber, brown), slightly warmer hair",
    "− purple, pink, blue hair ↔ + green, yellow, orange hair",
)
EDIT_WALK_FRAMES = 16  # faces in the GIF walking along one direction


def direction_notes(eigenvalues) -> tuple[str, ...] | None:
    """What the directions change, when these are the bundled generator's (same eigenvalues)."""
    if len(eigenvalues) != len(BUNDLED_EIGENVALUES):
        return None
    return BUNDLED_DIRECTIONS if np.allclose(eigenvalues, BUNDLED_EIGENVALUES, rtol=1e-3) else None


def eigenvalue_text(eigenvalue) -> str:
    return f"{float(eigenvalue):,.0f}" if eigenvalue >= 100 else f"{float(eigenvalue):.3g}"


def named_for_the_api(fn, names):
    """``fn`` (which takes its values as *args) shown to the API and to Gradio with these parameter names."""
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                          for n in names])
    return fn

def load_explorer(path: str | os.PathLike) -> explore.Explorer:
    """The generator at ``path``, loaded once; raises CheckpointError with a readable message."""
    return explore.Explorer(load_generator(path))


def user_errors(fn):
    """Show what was wrong with the inputs as a message in the UI or the API reply, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except ValueError as e:  # an expected refusal: no traceback in the server's log either
            raise gr.Error(str(e), print_exception=False) from None
    return wrapper


def leave_bad_values_to_the_callbacks(*components) -> None:
    """Hand a value that is no number (text, null, true, NaN, a list: all possible through the API),
    one outside a slider's range, or one that is not among a radio's choices, to the callback as it
    came, whose check names the input and what it takes. Gradio's own preprocess would fail on the
    first with a TypeError that reaches the user only as a bare 'error', and on the others with a
    message that does not say which input was wrong and a traceback in the server's log."""
    for component in components:
        if isinstance(component, gr.Radio):
            choices = [value for _, value in component.choices]

            def usable(payload, choices=choices):
                return isinstance(payload, str) and payload in choices
        else:
            low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)

            def usable(payload, low=low, high=high):
                return (explore.is_number(payload) and (low is None or payload >= low)
                        and (high is None or payload <= high))

        def preprocess(payload, gradio_preprocess=component.preprocess, usable=usable):
            return gradio_preprocess(payload) if usable(payload) else payload
        component.preprocess = preprocess


class RefuseUploads:
    """ASGI middleware answering 403 to Gradio's upload route: no input here takes a file, so
    nothing a visitor sends should land on the server's disk."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith("/upload"):
            await PlainTextResponse("This app takes no uploads.", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ServedFiles:
    """Images handed to Gradio as files, not arrays. Gradio rewrites an array's cached PNG in place,
    so a visitor fetching an image while another request wrote the same one got a torn response
    (h11: "Too much data for declared Content-Length"); a file it copies into its cache under a
    temporary name, then renames. Ours go into ``keep`` folders in turn, each over what its folder
    held ``keep`` files ago: Gradio copied that while answering its request, long before. (Deleting
    the old file and its folder instead took 8 ms a file on an ext4 disk, more than a map's PNG.)"""

    def __init__(self, keep: int = 256):
        self.root = Path(tempfile.mkdtemp(prefix="sagan-app-"))
        self.keep, self.written, self.lock = keep, 0, threading.Lock()
        weakref.finalize(self, shutil.rmtree, self.root, True)  # at the latest when the app exits

    def path(self, name: str) -> Path:
        """A path ending in ``name`` (the name a download gets), in the folder written longest ago."""
        with self.lock:
            folder = self.root / str(self.written % self.keep)
            self.written += 1
        folder.mkdir(exist_ok=True)
        for old in folder.iterdir():
            if old.name != name:  # a file of another name would stay there, unserved
                old.unlink()
        return folder / name

    def png(self, image: np.ndarray, name: str = "face.png") -> str:
        path = self.path(name)
        # Run-length strategy: 40% faster than zlib's default on these enlarged images, and as small.
        Image.fromarray(image).save(path, compress_type=zlib.Z_RLE)
        return str(path)


def build_demo(explorer: explore.Explorer) -> gr.Blocks:
    size = explorer.image_size
    has_maps = bool(explorer.g.attn)  # a generator trained without attention (--preset dcgan) has none to show
    if has_maps:
        explorer.figures()  # at start (seconds), not at the first visitor's first click
    files = ServedFiles()

    @user_errors
    def generate(seed, truncation):
        """Draw the anime face of a seed.

        Args:
            seed: which face, a whole number from 0 to 2,147,483,647.
            truncation: 0.2 to 3; lower draws faces nearer the average face, 3 is off.
        """
        return files.png(explore.upscale(explorer.face(seed, truncation).face, explore.UPSCALE))

    @user_errors
    def attention(seed, truncation, x, y):
        """Where self-attention looks from one pixel of a seed's face: per attention layer, one image of
        three views (that pixel's map, what it looks at more than the average pixel does, the layer's
        mean map) and a caption.

        Args:
            seed: which face, a whole number from 0 to 2,147,483,647.
            truncation: 0.2 to 3; lower draws faces nearer the average face, 3 is off.
            x: the pixel's column, 0 to the image size - 1.
            y: the pixel's row, 0 to the image size - 1.
        """
        return [(files.png(image, "attention.png"), caption)
                for image, caption in explorer.attention(seed, truncation, x, y)]

    def attention_of_typed_query(seed, truncation, x, y):
        # An emptied box is a query being retyped, not an error: keep the maps until it holds a number.
        return gr.skip() if x is None or y is None else attention(seed, truncation, x, y)

    @user_errors
    def grid(seed, count, truncation):
        """A grid of the faces of consecutive seeds.

        Args:
            seed: the first seed.
            count: how many faces, 1 to 64.
            truncation: 0.2 to 3; lower draws faces nearer the average face, 3 is off.
        """
        faces = explorer.grid(seed, count, truncation)
        return files.png(explore.upscale(explore.tile(faces), 2), "grid.png")

    @user_errors
    def interpolate(seed_a, seed_b, t, truncation, method):
        """The face a fraction t of the way from seed A's face to seed B's, in latent space.

        Args:
            seed_a: the first face's seed.
            seed_b: the second face's seed.
            t: 0 (face A) to 1 (face B).
            truncation: 0.2 to 3; lower draws faces nearer the average face, 3 is off.
            method: "spherical" or "linear" interpolation of the latents.
        """
        return files.png(explore.upscale(explorer.interpolate(seed_a, seed_b, t, truncation, method), explore.UPSCALE))

    @user_errors
    def walk(seed_a, seed_b, frames, truncation, method):
        """A walk from seed A's face to seed B's: a strip of frames and an animated GIF.

        Args:
            seed_a: the first face's seed.
            seed_b: the last face's seed.
            frames: how many faces, 2 to 32.
            truncation: 0.2 to 3; lower draws faces nearer the average face, 3 is off.
            method: "spherical" or "linear" interpolation of the latents.
        """
        faces = explorer.walk(seed_a, seed_b, frames, truncation, method)
        gif = files.path(f"walk-{int(seed_a)}-{int(seed_b)}-{int(frames)}-{float(truncation):g}-{method}.gif")
        explore.save_gif(explore.upscale(faces, 4), str(gif))
        strip = explore.upscale(explore.tile(faces, columns=min(len(faces), WALK_COLUMNS)), 2)
        return files.png(strip, "walk.png"), str(gif), str(gif)

    editor = editing.Editor(explorer)  # the semantic directions, found as the checkpoint is loaded
    count = editor.count
    amount_names = [f"amount_{i + 1}" for i in range(count)]
    edit_names = ["seed", "truncation", "steps", *amount_names]

    @user_errors
    def edit(seed, truncation, direction, amount):
        """A seed's face moved along one semantic direction (SeFa) of the generator's latent space.

        Args:
            seed: which face, a whole number from 0 to 2,147,483,647.
            truncation: 0.2 to 3; lower draws faces nearer the average face, 3 is off.
            direction: which direction, from 1 (the strongest) to 8 (fewer for a latent under 8 long).
            amount: how far, in standard deviations of the latent; 0 is the seed's face exactly.
        """
        return files.png(explore.upscale(editor.one(seed, truncation, direction, amount).face, explore.UPSCALE),
                         "edit.png")

    @user_errors
    def edit_face(seed, truncation, steps, *amounts):
        return files.png(explore.upscale(editor.face(seed, truncation, steps, amounts).face, explore.UPSCALE),
                         "edit.png")

    @user_errors
    def edit_attention(seed, truncation, steps, *values):
        *amounts, x, y = values
        return [(files.png(image, "attention.png"), caption)
                for image, caption in editor.attention(seed, truncation, steps, amounts, x, y)]

    def edit_attention_of_typed_query(*values):
        return gr.skip() if None in values[-2:] else edit_attention(*values)

    @user_errors
    def edit_grid(seed, truncation, steps, *amounts):
        faces = editor.grid(seed, truncation, steps, amounts)
        return files.png(explore.upscale(explore.tile(faces, columns=len(editing.GRID_AMOUNTS)), 2), "edit-grid.png")

    @user_errors
    def edit_walk(seed, truncation, steps, *values):
        *amounts, direction, frames = values
        faces = editor.walk(seed, truncation, steps, amounts, direction, frames)
        gif = files.path(f"edit-{int(seed)}-direction-{int(direction)}.gif")
        explore.save_gif(explore.upscale(faces, 4), str(gif))
        return str(gif), str(gif)

    @user_errors
    def nearby(seed, truncation, steps, *values):
        *amounts, radius, first_seed = values
        faces = editor.variations(seed, truncation, steps, amounts, radius, first_seed)
        return [files.png(explore.upscale(face, 2), "nearby.png") for face in faces]

    @user_errors
    def choose_nearby(steps, radius, first_seed, evt: gr.SelectData):
        chosen = editing.variation_steps(explore.check_seed(first_seed), editing.check_radius(radius))[evt.index]
        taken = editing.parse_steps(steps)
        if len(taken) >= editing.MAX_STEPS:
            raise ValueError(f"an edit holds at most {editing.MAX_STEPS} nearby steps: press reset to start again.")
        return editing.format_steps(taken + (chosen,))

    def edit_recipe(seed, truncation, steps, *amounts):
        """The API call that makes the edited face again: the edit's state is these numbers."""
        values = dict(zip(edit_names, (seed, truncation, steps or "", *amounts)))
        args = ", ".join(f"{name}={value!r}" for name, value in values.items())
        return f"Make this face again (gradio_client): `Client(URL).predict({args}, api_name=\"/edit_face\")`"

    for fn, after in ((edit_face, []), (edit_grid, []), (edit_recipe, []), (edit_attention, ["x", "y"]),
                      (edit_attention_of_typed_query, ["x", "y"]), (edit_walk, ["direction", "frames"]),
                      (nearby, ["radius", "first_seed"])):
        named_for_the_api(fn, [*edit_names, *after])

    with gr.Blocks(title="SAGAN anime faces", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# SAGAN anime faces\n" + (LEAD if has_maps else LEAD_WITHOUT_ATTENTION))
        # On a phone the full text pushed the face below the first screen.
        with gr.Accordion("What is SAGAN? What do the seed and the truncation do?", open=False):
            gr.Markdown(ABOUT)
        with gr.Tab("Face & attention"):
            # Controls, face and maps side by side, so a click and the maps it changes are in view together.
            with gr.Row():
                # The controls above the face, so the maps get the room for three views of a layer side by side.
                with gr.Column(scale=1, min_width=260):
                    # Every seed, as the API takes: neighbouring seeds are unrelated faces, so dragging
                    # picks one at random at any range, and a seed typed in the box is kept, not clamped.
                    seed = gr.Slider(0, explore.MAX_SEED, value=0, step=1, label="seed", elem_id="seed")
                    random_seed = gr.Button("random seed", size="sm")
                    truncation = gr.Slider(explore.TRUNCATION_MIN, explore.TRUNCATION_OFF,
                                           value=explore.TRUNCATION_OFF, step=0.05, label="truncation",
                                           info=f"lower = nearer the average face; {explore.TRUNCATION_OFF:g} = off",
                                           elem_id="truncation")
                    face = gr.Image(label="face: click a pixel" if has_maps else "face", format="png",
                                    interactive=False, elem_id="face", elem_classes="pixelated", buttons=["download"],
                                    alt_text="the face of the chosen seed" + (": click a pixel to see its attention "
                                                                               "maps" if has_maps else ""))
                with gr.Column(scale=2, min_width=260):
                    attn_maps = gr.Gallery(label="where that pixel attends: three views per layer", format="png",
                                           columns=1, object_fit="contain", height="auto", elem_id="attention",
                                           elem_classes="pixelated", interactive=False, visible=has_maps)
                    gr.Markdown(VIEWS_LEGEND, visible=has_maps, elem_id="views-legend")
                    # Below the maps they choose (on a phone too, where the columns stack).
                    with gr.Row(visible=has_maps):  # no precision: a typed 3.7 is refused by name, not drawn as 4
                        query_x = gr.Number(size // 2, label=f"query x (0-{size - 1})", elem_id="query-x")
                        query_y = gr.Number(size // 2, label=f"query y (0-{size - 1})", elem_id="query-y")
            gr.Markdown(HOW_TO_READ, visible=has_maps)
        with gr.Tab("Grid"):
            with gr.Row():
                grid_count = gr.Slider(1, explore.MAX_GRID, value=16, step=1, label="faces", elem_id="grid-count",
                                       info="consecutive seeds from the first tab's seed, with its truncation, "
                                            "row by row")
                grid_button = gr.Button("show grid", variant="primary")
            grid_image = gr.Image(label="consecutive seeds", show_label=False, format="png", interactive=False,
                                  elem_id="grid", elem_classes="pixelated", buttons=["download", "fullscreen"],
                                  alt_text="faces of consecutive seeds, row by row")
        with gr.Tab("Interpolation"):
            gr.Markdown("A walk through latent space from seed A to seed B, with the truncation "
                        "set on the first tab. Smooth changes mean the generator learned a continuous space. "
                        "**make walk** lays its frames out below, row by row, and as a looping GIF.")
            with gr.Row():
                with gr.Column(scale=1):
                    seed_a = gr.Slider(0, explore.MAX_SEED, value=0, step=1, label="seed A")
                    seed_b = gr.Slider(0, explore.MAX_SEED, value=1, step=1, label="seed B", elem_id="seed-b")
                    t = gr.Slider(0, 1, value=0.5, step=0.01, label="t (0 = A, 1 = B)")
                    method = gr.Radio(list(explore.METHODS), value="spherical", label="interpolation",
                                      info="spherical keeps in-between latents at a typical length")
                    frames = gr.Slider(2, explore.MAX_FRAMES, value=8, step=1, label="frames in the walk",
                                       elem_id="walk-frames")
                    walk_button = gr.Button("make walk", variant="primary")
                with gr.Column(scale=2):
                    between = gr.Image(label="face at t", format="png", interactive=False, elem_id="between",
                                       elem_classes="pixelated", buttons=["download", "fullscreen"],
                                       alt_text="the face between seed A and seed B at t")
            strip = gr.Image(label="walk from A to B, row by row", show_label=False, format="png", interactive=False,
                             elem_id="walk-strip", elem_classes="pixelated", buttons=["download", "fullscreen"],
                             alt_text="the frames of the walk from seed A to seed B, row by row")
            with gr.Row():
                walk_preview = gr.Image(label="walk (animated)", interactive=False, elem_classes="pixelated",
                                        buttons=["fullscreen"], alt_text="the walk from seed A to seed B, animated")
                walk_file = gr.File(label="download the walk (GIF)", interactive=False)
        with gr.Tab("Edit"):
            gr.Markdown(EDIT_LEAD)
            notes = direction_notes(editor.eigenvalues.tolist())
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    edit_seed = gr.Slider(0, explore.MAX_SEED, value=0, step=1, label="seed", elem_id="edit-seed")
                    edit_truncation = gr.Slider(explore.TRUNCATION_MIN, explore.TRUNCATION_OFF,
                                                value=explore.TRUNCATION_OFF, step=0.05, label="truncation",
                                                info=f"applied before the edit; {explore.TRUNCATION_OFF:g} = off",
                                                elem_id="edit-truncation")
                    with gr.Row():
                        from_first_tab = gr.Button("the first tab's face", size="sm")
                        reset = gr.Button("reset", size="sm", elem_id="edit-reset")
                    amounts = [gr.Slider(-editing.MAX_AMOUNT, editing.MAX_AMOUNT, value=0, step=0.1,
                                         label=f"direction {i + 1} · eigenvalue "
                                               f"{eigenvalue_text(editor.eigenvalues[i])}",
                                         info=notes[i] if notes else None, elem_id=f"amount-{i + 1}")
                               for i in range(count)]
                with gr.Column(scale=1, min_width=260):
                    edit_image = gr.Image(label="edited face: click a pixel" if has_maps else "edited face",
                                          format="png", interactive=False, elem_id="edit-face",
                                          elem_classes="pixelated", buttons=["download"],
                                          alt_text="the edited face" + (": click a pixel to see its attention maps"
                                                                        if has_maps else ""))
                    edit_steps = gr.Textbox("", label="nearby steps taken (seed:radius, …)", elem_id="edit-steps",
                                            info="a nearby face chosen below adds its step; clear it to undo")
                    recipe = gr.Markdown(elem_id="edit-recipe")
                with gr.Column(scale=1, min_width=260):
                    edit_maps = gr.Gallery(label="where that pixel attends: three views per layer", format="png",
                                           columns=1, object_fit="contain",
                                           height="auto", elem_id="edit-attention", elem_classes="pixelated",
                                           interactive=False, visible=has_maps)
                    gr.Markdown(VIEWS_LEGEND, visible=has_maps)
                    with gr.Row(visible=has_maps):
                        edit_x = gr.Number(size // 2, label=f"query x (0-{size - 1})", elem_id="edit-query-x")
                        edit_y = gr.Number(size // 2, label=f"query y (0-{size - 1})", elem_id="edit-query-y")
            edit_grid_image = gr.Image(label="each direction (rows) set to "
                                             + ", ".join(f"{a:+g}" for a in editing.GRID_AMOUNTS) + " (columns)",
                                       format="png", interactive=False, elem_id="edit-grid", elem_classes="pixelated",
                                       buttons=["download", "fullscreen"],
                                       alt_text="the edited face with each direction set to each step, a row per "
                                                "direction")
            with gr.Row():
                with gr.Column(scale=1):
                    walk_direction = gr.Slider(1, count, value=1, step=1, label="direction to walk along",
                                               elem_id="edit-walk-direction",
                                               info=f"from {-editing.MAX_AMOUNT:g} to {editing.MAX_AMOUNT:+g}, "
                                                    "the other amounts kept")
                    edit_gif_file = gr.File(label="download the walk (GIF)", interactive=False)
                edit_gif = gr.Image(label="walk along one direction (animated)", interactive=False,
                                    elem_id="edit-walk", elem_classes="pixelated", buttons=["fullscreen"],
                                    alt_text="the edited face walking along one direction, animated")
            gr.Markdown("**Nearby faces**: the current face plus a small random step. Click one to make it the "
                        "current face.")
            with gr.Row():
                radius = gr.Slider(0.05, editing.MAX_RADIUS, value=0.5, step=0.05, label="radius",
                                   info="the step's size, in standard deviations of the latent", elem_id="radius")
                nearby_seed = gr.Number(1, label="first step seed", precision=0, elem_id="nearby-seed")
                other_nearby = gr.Button("other nearby faces", size="sm")
            nearby_gallery = gr.Gallery(label="nearby faces: click one to make it the current face", format="png",
                                        columns=editing.VARIATIONS // 2, object_fit="contain", height="auto",
                                        elem_id="nearby", elem_classes="pixelated", interactive=False,
                                        allow_preview=False)

        leave_bad_values_to_the_callbacks(seed, truncation, query_x, query_y, grid_count, seed_a, seed_b, t, frames,
                                          method)
        live = dict(show_progress="hidden", trigger_mode="always_last")
        random_seed.click(None, None, seed, js=f"() => Math.floor(Math.random() * {explore.MAX_SEED + 1})")
        # An event's listeners run in the order they were added, each one on the server only once it
        # answered, so the ones that run in the browser alone come first, to act at once.
        # A grid or a walk shows the inputs it was made from: it is cleared when they change, in the
        # browser. Cleared through the server, or after the face at t, a clearing could arrive after the
        # grid or walk asked for next (a count typed just before a click, 0 raised to 1 on leaving the box),
        # and wipe it.
        gr.on([seed.change, grid_count.change, truncation.change], None, None, grid_image, js="() => null")
        gr.on([seed_a.change, seed_b.change, frames.change, truncation.change, method.change],
              None, None, [strip, walk_preview, walk_file], js="() => [null, null, null]")
        face.select(None, None, None, js=SHOW_MAPS_ON_A_PHONE)
        # Two listeners draw the maps: one queue, one request at a time, answers them in the order they
        # reach the server, so a slow earlier request (a new face) cannot overwrite a later click's maps.
        maps_queue = dict(concurrency_id="attention", concurrency_limit=1)
        # The maps follow the face only once it rendered: a bad seed or truncation is reported once.
        gr.on([demo.load, seed.change, truncation.change], generate, [seed, truncation], face,
              api_name="generate", **live).success(attention, [seed, truncation, query_x, query_y], attn_maps,
                                                   api_name="attention", **live, **maps_queue)
        demo.load(None, None, None, js=RECORD_FACE_CLICKS)
        face.select(None, [query_x, query_y], [query_x, query_y], js=QUERY_OF_FACE_CLICK)
        gr.on([query_x.change, query_y.change], attention_of_typed_query, [seed, truncation, query_x, query_y],
              attn_maps, api_name=False, **live, **maps_queue)
        grid_button.click(grid, [seed, grid_count, truncation], grid_image, api_name="grid")
        # The truncation reaches the interpolation through the face it changes, not as a second always_last
        # listener on truncation.change: with two, Gradio 6.31 resends them forever once a value is typed
        # into the slider's box and the box is left. A bad truncation is then also reported once.
        gr.on([seed_a.change, seed_b.change, t.change, method.change, face.change],
              interpolate, [seed_a, seed_b, t, truncation, method], between, api_name="interpolate", **live)
        walk_button.click(walk, [seed_a, seed_b, frames, truncation, method], [strip, walk_preview, walk_file],
                          api_name="walk")
        # First impressions: the grid and the walk of the default inputs are there when their tabs are opened.
        demo.load(grid, [seed, grid_count, truncation], grid_image, api_name=False)
        demo.load(walk, [seed_a, seed_b, frames, truncation, method], [strip, walk_preview, walk_file], api_name=False)
        with gr.Row(visible=False):  # the API's /edit and the walk's length: no widgets
            edit_walk_frames = gr.Number(EDIT_WALK_FRAMES, label="frames")
            api_direction, api_amount = gr.Number(1, label="direction"), gr.Number(0, label="amount")
            api_face = gr.Image(format="png", label="face", interactive=False)
            edit_api = gr.Button("edit")
        leave_bad_values_to_the_callbacks(edit_seed, edit_truncation, *amounts, edit_x, edit_y, walk_direction,
                                          radius, nearby_seed, edit_walk_frames, api_direction, api_amount)
        edit_inputs = [edit_seed, edit_truncation, edit_steps, *amounts]
        edit_changes = [demo.load, edit_seed.change, edit_truncation.change, edit_steps.change,
                        *(a.change for a in amounts)]
        # The grid, the walk and the nearby faces take many forward passes: one at a time, in a queue of their
        # own, so the other request at a time still answers the face and its maps.
        extras = dict(concurrency_id="edit-extras", concurrency_limit=1)
        reset.click(None, None, [edit_steps, *amounts], js=f"() => ['', {', '.join(['0'] * count)}]")
        from_first_tab.click(None, [seed, truncation], [edit_seed, edit_truncation], js="(s, t) => [s, t]")
        other_nearby.click(None, None, nearby_seed, js=f"() => Math.floor(Math.random() * {explore.MAX_SEED + 1})")
        gr.on(edit_changes, edit_recipe, edit_inputs, recipe, api_name=False, show_progress="hidden",
              trigger_mode="always_last", queue=False)
        edited = gr.on(edit_changes, edit_face, edit_inputs, edit_image, api_name="edit_face", **live)
        edited.success(edit_attention, [*edit_inputs, edit_x, edit_y], edit_maps, api_name="edit_attention",
                       **live, concurrency_id="edit-attention", concurrency_limit=1)
        edited.success(edit_grid, edit_inputs, edit_grid_image, api_name="edit_grid", **live, **extras)
        edited.success(nearby, [*edit_inputs, radius, nearby_seed], nearby_gallery, api_name="edit_nearby", **live,
                       **extras)
        walk_inputs = [*edit_inputs, walk_direction, edit_walk_frames]
        edited.success(edit_walk, walk_inputs, [edit_gif, edit_gif_file], api_name="edit_walk", **live, **extras)
        walk_direction.change(edit_walk, walk_inputs, [edit_gif, edit_gif_file], api_name=False, **live, **extras)
        gr.on([radius.change, nearby_seed.change], nearby, [*edit_inputs, radius, nearby_seed], nearby_gallery,
              api_name=False, **live, **extras)
        nearby_gallery.select(choose_nearby, [edit_steps, radius, nearby_seed], edit_steps, api_name=False)
        edit_image.select(None, [edit_x, edit_y], [edit_x, edit_y], js=QUERY_OF_FACE_CLICK)
        gr.on([edit_x.change, edit_y.change], edit_attention_of_typed_query, [*edit_inputs, edit_x, edit_y], edit_maps,
              api_name=False, **live, concurrency_id="edit-attention", concurrency_limit=1)
        # /edit: one direction, for API clients (the sliders' several amounts are /edit_face), through hidden
        # components, so the client gets the face as a file, as from /generate.
        edit_api.click(edit, [edit_seed, edit_truncation, api_direction, api_amount], api_face, api_name="edit")
    # With the Edit tab, a phone's width no longer held every tab's name, and Gradio hid Interpolation in a
    # menu: the names wrap onto a second row instead. (The tabs' own Tabs block is made by the first gr.Tab.)
    for block in demo.blocks.values():
        if isinstance(block, gr.Tabs):
            block.overflow_behavior = "wrap"
    # One forward pass at a time runs anyway (explore.Explorer's lock); the limit keeps a crowd
    # of Spaces visitors queued instead of piling threads onto the CPU.
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def port_number(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: choose one from 1 to 65535")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # An empty variable counts as unset, as a blank line in a Space's or a container's settings means.
    parser.add_argument("--checkpoint", default=os.environ.get("SAGAN_CHECKPOINT") or DEFAULT_CHECKPOINT,
                        help="exported generator (.safetensors); default $SAGAN_CHECKPOINT or the bundled "
                             "checkpoints/anime64.safetensors")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to listen on; default $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=port_number, default=SERVER_PORT or "7860",
                        help="port to listen on; default $GRADIO_SERVER_PORT or 7860")
    # Off unless asked for: Gradio's own variable asks too, the one way to ask on a Space (no flags there).
    parser.add_argument("--mcp", action=argparse.BooleanOptionalAction,
                        default=os.environ.get("GRADIO_MCP_SERVER", "").lower() == "true",
                        help="also serve the named endpoints as MCP tools for AI assistants, at "
                             "<url>gradio_api/mcp/; default $GRADIO_MCP_SERVER=true, else off")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.mcp and importlib.util.find_spec("mcp") is None:
        print('error: --mcp needs Gradio\'s MCP extra: pip install -r requirements.txt (it lists "gradio[mcp]"), '
              "or leave --mcp out.", file=sys.stderr)
        sys.exit(2)
    try:
        explorer = load_explorer(args.checkpoint)
    except CheckpointError as e:
        print(f"error: cannot load the checkpoint: {str(e).rstrip('.')}. Choose another with "
              "--checkpoint PATH or SAGAN_CHECKPOINT=PATH.", file=sys.stderr)
        sys.exit(2)
    # SIGTERM (how a Space or a container is stopped) closes the app as Ctrl-C does, so the served
    # files are removed on the way out instead of left in the temp directory.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo = None
    try:
        demo = build_demo(explorer)
        try:
            # share=False explicitly: it also overrides GRADIO_SHARE=True. No allowed_paths: the file route
            # serves only Gradio's cache, where the outputs are copied. quiet: Gradio's start-up text advises
            # share=True in launch(), which users of this CLI never call.
            _, url, _ = demo.launch(server_name=args.host, server_port=args.port, share=False, ssr_mode=False,
                                    css=CSS, theme=THEME, app_kwargs={"middleware": [Middleware(RefuseUploads)]},
                                    quiet=True, prevent_thread_lock=True, mcp_server=args.mcp)
        except OSError:  # Gradio's own text advises a launch() argument, which users of this CLI never call
            print(f"error: cannot listen on {args.host}:{args.port}: another program, perhaps another app.py, holds "
                  "the port, or the address is not this machine's. Choose another with --port PORT or --host HOST.",
                  file=sys.stderr)
            sys.exit(2)
        print(f"Running on {url} (Ctrl-C to stop)", flush=True)
        # Until Ctrl-C or SIGTERM. (With GRADIO_DEBUG=1, launch() itself waited for one and stopped the server.)
        while not demo.server.should_exit:
            time.sleep(0.1)
    except KeyboardInterrupt:  # at any point: while starting, too, when a container is stopped at once
        pass
    if demo is not None:
        # A second Ctrl-C or SIGTERM while the server closes (seconds) would only interrupt that, with a traceback.
        previous = [signal.signal(stop, signal.SIG_IGN) for stop in (signal.SIGINT, signal.SIGTERM)]
        demo.close()
        for stop, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
            signal.signal(stop, handler)


if __name__ == "__main__":
    main()
