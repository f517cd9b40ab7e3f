"""What a click on the face costs over HTTP, beyond Gradio's own round trip.

    python bench/click_latency.py [--checkpoint checkpoints/anime64.safetensors] [--requests 50]

Starts the app (``app.build_demo``) on a free loopback port in a subprocess, with one endpoint added
by this script alone: /noop answers a fixed face-sized PNG and computes nothing, so its latency is
Gradio's and gradio_client's own round trip for an image (queue, postprocess, download). Then, round
after round in one shuffled order per round, it asks for

- /noop;
- /generate of a seed not drawn yet (a forward pass and the face's PNG);
- /attention on a face already drawn, at a new pixel (a click: the views of every layer);
- /attention of a seed not drawn yet (a new face with its maps: the forward pass and the views),

each until its images are downloaded, and prints, per request kind, the median latency and the median
over rounds of its difference from the same round's /noop. Other work on the machine slows each kind
alike within a round, so the paired differences are steadier than the latencies. Name the CPU with
the numbers (printed first).

The images are fetched as a browser fetches them, over one kept-alive connection. gradio_client's own
downloads (``--client-downloads``) open a new connection with a new SSL context for each file, tens of
ms of the client's own time per image, which a visitor never waits for: a request that returns six
images then looks slower by five times that.
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_app import free_port, stop_app, wait_until_up  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OFF = 3.0            # explore.TRUNCATION_OFF
DRAWN_SEED = 1234    # the face clicked on, drawn before the timing starts
KINDS = ("noop", "generate", "click", "new face + maps")


def serve(checkpoint: str, port: int) -> None:
    """The app's demo plus /noop, on loopback until killed."""
    import gradio as gr
    import numpy as np
    from PIL import Image

    import app

    explorer = app.load_explorer(checkpoint)
    demo = app.build_demo(explorer)
    size = explorer.image_size * 8  # explore.UPSCALE: a face as the app shows it
    fixed = Path(tempfile.mkdtemp(prefix="click-latency-")) / "noop.png"
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(fixed)
    with demo:
        noop_image = gr.Image(visible=False, format="png")
        gr.Button(visible=False).click(lambda: str(fixed), None, noop_image, api_name="noop")
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, ssr_mode=False, quiet=True,
                prevent_thread_lock=True)
    while True:
        time.sleep(1)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def files_in(result) -> list[str]:
    """The URLs of the files in an answer got with download_files=False."""
    if isinstance(result, dict):
        return [result["url"]] if "url" in result else [u for v in result.values() for u in files_in(v)]
    if isinstance(result, (list, tuple)):
        return [u for v in result for u in files_in(v)]
    return []


def measure(url: str, rounds: int, image_size: int, client_downloads: bool) -> dict[str, list[float]]:
    """Latencies in ms of ``rounds`` requests of each kind, each until its images are downloaded: over one
    kept-alive connection, as a browser fetches them, or by gradio_client itself (``client_downloads``),
    which opens a new connection, with a new SSL context, for each file."""
    import httpx
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=tempfile.mkdtemp() if client_downloads else False)
    browser = httpx.Client()
    rng = random.Random(0)
    new_seeds = iter(range(10_000, 20_000))

    def fetched(result):
        for file_url in [] if client_downloads else files_in(result):
            browser.get(file_url).raise_for_status()
        return result

    requests = {
        "noop": lambda: client.predict(api_name="/noop"),
        "generate": lambda: client.predict(next(new_seeds), OFF, api_name="/generate"),
        "click": lambda: client.predict(DRAWN_SEED, OFF, rng.randrange(image_size), rng.randrange(image_size),
                                        api_name="/attention"),
        "new face + maps": lambda: client.predict(next(new_seeds), OFF, image_size // 2, image_size // 2,
                                                  api_name="/attention"),
    }
    for request in requests.values():  # warm-up; also draws DRAWN_SEED's face
        fetched(request())
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        order = list(KINDS)
        rng.shuffle(order)
        for kind in order:
            start = time.perf_counter()
            fetched(requests[kind]())
            times[kind].append(1000 * (time.perf_counter() - start))
    browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "anime64.safetensors"))
    parser.add_argument("--requests", type=int, default=50, help="rounds, each one request of every kind")
    parser.add_argument("--client-downloads", action="store_true",
                        help="let gradio_client download the images (a new connection for each) instead of "
                             "fetching them over one kept-alive connection as a browser does")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the server subprocess
    args = parser.parse_args()
    if args.serve:
        serve(args.checkpoint, args.serve)
        return

    from sagan.checkpoint import export_config
    image_size = export_config(args.checkpoint).image_size
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, __file__, "--checkpoint", args.checkpoint, "--serve", str(port)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(proc, f"http://127.0.0.1:{port}/", time.monotonic() + 180)
            times = measure(f"http://127.0.0.1:{port}/", args.requests, image_size, args.client_downloads)
        except (RuntimeError, TimeoutError):
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            stop_app(proc)
    how = "gradio_client's own downloads" if args.client_downloads else "images fetched over one kept-alive connection"
    print(f"CPU: {cpu_name()}; {args.requests} rounds; {how}; checkpoint {args.checkpoint}")
    print(f"{'request':<16} {'p50 ms':>8} {'p50 of (request - noop) ms':>28}")
    for kind in KINDS:
        extra = [t - n for t, n in zip(times[kind], times["noop"])]
        print(f"{kind:<16} {statistics.median(times[kind]):8.1f} {statistics.median(extra):+28.1f}")


if __name__ == "__main__":
    main()
