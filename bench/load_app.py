"""Load test of the app: concurrent gradio_client users against a launched ``python app.py``.

Starts the app on a free loopback port (127.0.0.1 only), computes the answer to each distinct
request alone (sequentially, through the same server), then has ``--users`` clients send
``--requests`` mixed requests each at once, and compares every answer's pixels with the one made
alone. Prints p50/p95 latency, throughput and the error count; exits 1 on any error or mismatch,
or when the whole run passes ``--timeout`` seconds (the server is then stopped).

    python bench/load_app.py                              # 16 users x 25 requests
    python bench/load_app.py --users 4 --requests 5 --checkpoint other.safetensors
    python bench/load_app.py --url http://127.0.0.1:7860/    # an app already running on loopback
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from gradio_client import Client
from PIL import Image, ImageSequence

ROOT = Path(__file__).resolve().parent.parent
OFF = 3.0                      # explore.TRUNCATION_OFF, repeated to keep this script free of torch
TRUNCATIONS = (0.5, 0.8, OFF)
SEEDS = range(48)              # a small pool, so users often ask for the same faces at once
TIMED_OUT = -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(checkpoint: str, port: int, log, env: dict | None = None) -> subprocess.Popen:
    """``python app.py`` serving ``checkpoint`` on loopback, with ``env`` added to this environment."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", **(env or {}))
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", checkpoint,
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(proc: subprocess.Popen, url: str, deadline: float) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"app.py did not answer on {url} before the time limit") from None
            time.sleep(0.3)


def stop_app(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if the app has not exited within ``timeout`` s (a loaded machine can take 10)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_requests(rng: random.Random, count: int, image_size: int) -> list[tuple[str, tuple]]:
    """``count`` mixed (api_name, args) requests; grids and walks stay small to bound the run."""
    out = []
    for _ in range(count):
        seed, trunc = rng.choice(SEEDS), rng.choice(TRUNCATIONS)
        kind = rng.choices(["/generate", "/attention", "/interpolate", "/grid", "/walk"], [4, 3, 3, 1, 1])[0]
        if kind == "/generate":
            args = (seed, trunc)
        elif kind == "/attention":
            args = (seed, trunc, rng.randrange(image_size), rng.randrange(image_size))
        elif kind == "/interpolate":
            args = (seed, rng.choice(SEEDS), rng.choice([0.0, 0.25, 0.5, 1.0]), trunc,
                    rng.choice(["spherical", "linear"]))
        elif kind == "/grid":
            args = (seed, rng.randint(1, 4), trunc)
        else:
            args = (seed, rng.choice(SEEDS), rng.randint(2, 4), trunc, rng.choice(["spherical", "linear"]))
        out.append((kind, args))
    return out


def pixels(path: str) -> list[np.ndarray]:
    """Every frame of the image at ``path`` as RGB arrays: outputs are compared by content, not name."""
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


def normalise(api_name: str, result):
    """The answer as comparable data: frames of each returned image, plus the attention captions."""
    if api_name == "/attention":
        return [(pixels(item["image"]), item["caption"]) for item in result]
    if api_name == "/walk":
        return [pixels(path) for path in result]
    return pixels(result)


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def call(client: Client, request) -> object:
    api_name, args = request
    return normalise(api_name, client.predict(*args, api_name=api_name))


def run(args) -> int:
    start = time.monotonic()
    deadline = start + args.timeout
    work = tempfile.TemporaryDirectory(prefix="sagan-load-")
    log_path = Path(work.name) / "app.log"
    log_path.touch()
    if args.url:
        url, proc = args.url, None
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        with open(log_path, "wb") as log:
            proc = start_app(args.checkpoint, port, log)
    stop = threading.Event()
    try:
        if proc is not None:
            wait_until_up(proc, url, deadline)
        probe = Client(url, verbose=False, download_files=os.path.join(work.name, "alone"))
        image_size = pixels(probe.predict(0, OFF, api_name="/generate"))[0].shape[0] // 8
        rng = random.Random(args.seed)
        plans = [make_requests(rng, args.requests, image_size) for _ in range(args.users)]
        distinct = sorted({r for plan in plans for r in plan}, key=repr)

        # Each distinct request alone first: the reference every concurrent answer must equal.
        expected = {}
        for request in distinct:
            if time.monotonic() > deadline:
                raise TimeoutError("the time limit passed while computing the answers alone")
            expected[request] = call(probe, request)
        print(f"{len(distinct)} distinct requests answered alone in {time.monotonic() - start:.1f} s "
              f"(including start-up)")

        latencies, errors, mismatches = [], [], []
        lock = threading.Lock()

        clients = [Client(url, verbose=False, download_files=os.path.join(work.name, f"user{i}"))
                   for i in range(args.users)]

        def user(i: int) -> None:
            for request in plans[i]:
                if stop.is_set():
                    return
                t = time.perf_counter()
                try:
                    answer = call(clients[i], request)
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        errors.append((request, f"{type(e).__name__}: {e}"))
                    continue
                elapsed = time.perf_counter() - t
                with lock:
                    latencies.append(elapsed)
                    if not same(answer, expected[request]):
                        mismatches.append(request)

        t0 = time.perf_counter()
        pool = ThreadPoolExecutor(args.users)
        futures = [pool.submit(user, i) for i in range(args.users)]
        _, pending = wait(futures, timeout=max(deadline - time.monotonic(), 0))
        if pending:
            print(f"error: the run passed the {args.timeout:g} s limit; stopped the app", file=sys.stderr)
            return TIMED_OUT
        pool.shutdown()
        for future in futures:
            future.result()
        wall = time.perf_counter() - t0

        total = args.users * args.requests
        if latencies:
            p50, p95 = np.percentile(latencies, [50, 95])
            print(f"{args.users} users x {args.requests} requests: {len(latencies)}/{total} answered in "
                  f"{wall:.1f} s, {len(latencies) / wall:.1f} requests/s, "
                  f"latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
        print(f"errors: {len(errors)}, mismatches: {len(mismatches)}")
        for request, message in errors[:5]:
            print(f"  error {request}: {message}", file=sys.stderr)
        for request in mismatches[:5]:
            print(f"  mismatch {request}: differs from the same request made alone", file=sys.stderr)
        return 1 if errors or mismatches else 0
    except (RuntimeError, TimeoutError) as e:
        print(f"error: {e}\n--- app log ---\n{log_path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        if proc is not None:
            stop_app(proc)
        work.cleanup()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--requests", type=int, default=25, help="requests per client (default 25)")
    parser.add_argument("--checkpoint", default="checkpoints/anime64.safetensors",
                        help="exported generator the app serves (default checkpoints/anime64.safetensors)")
    parser.add_argument("--timeout", type=float, default=300, help="limit for the whole run, seconds (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix (default 0)")
    parser.add_argument("--url", help="test an app already running at this loopback URL instead of launching one")
    args = parser.parse_args(argv)
    if args.users < 1 or args.requests < 1 or args.timeout <= 0:
        parser.error("--users and --requests must be at least 1, --timeout positive")
    if args.url:
        # Loopback only: this script must never load someone else's server.
        if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"--url must be a loopback address (127.0.0.1, localhost, ::1), got {args.url}")
        args.url = args.url.rstrip("/") + "/"
        return args
    if not Path(args.checkpoint).is_file():
        parser.error(f"no checkpoint at {args.checkpoint}; train one or pass --checkpoint PATH")
    args.checkpoint = str(Path(args.checkpoint).resolve())  # app.py runs in the repository root
    return args


if __name__ == "__main__":
    code = run(parse_args())
    if code == TIMED_OUT:
        # Client threads may still wait on the stopped server; don't let exit join them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.exit(code)
