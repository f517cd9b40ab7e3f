"""Repeated two-process CPU trainings under torchrun: does every one exit cleanly?

A run that trained, wrote its run directory and then aborted at interpreter shutdown (rank 1:
``terminate called without an active exception``, SIGABRT) fails its job all the same. This runs
``--runs`` short trainings of a checkout's train.py one after another, each as

    torchrun --standalone --nproc_per_node 2 train.py --data DIR --out OUT --steps 10 --batch-size 8
             --image-size 32 --device cpu --seed 1

on ``--images`` small PNGs, optionally with ``--load`` busy-looping processes alongside (the failure
was seen on a busy machine). Prints each run's exit code, seconds and any abort line, then the
failure count; exits 1 when any run failed.

    python bench/ddp_exit.py                          # 20 runs with 2 load processes, this checkout
    python bench/ddp_exit.py --runs 20 --load 2 --root /tmp/old-checkout    # another version's train.py
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ABORT_SIGNS = ("terminate called", "Aborted", "SIGABRT", "Signal 6")


def write_pngs(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")


def busy_loop() -> None:
    while True:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--load", type=int, default=2, help="busy-looping processes run alongside (0: none)")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--root", default=str(ROOT), help="the checkout whose train.py runs (default: this one)")
    p.add_argument("--timeout", type=float, default=300, help="seconds before a run counts as hung and is killed")
    args = p.parse_args()
    root = Path(args.root).resolve()
    git = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h"], capture_output=True, text=True)
    print(f"train.py of {root} ({git.stdout.strip() or 'not a git checkout'}), {args.runs} runs, "
          f"{args.load} load processes, {os.cpu_count()} CPUs", flush=True)
    load = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(args.load)]
    for proc in load:
        proc.start()
    failures = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            write_pngs(data, args.images)
            for i in range(args.runs):
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       "train.py", "--data", str(data), "--out", str(Path(tmp) / f"run{i}"), "--steps",
                       str(args.steps), "--batch-size", "8", "--image-size", "32", "--device", "cpu", "--seed", "1"]
                started = time.monotonic()
                try:
                    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=args.timeout)
                    code, output = done.returncode, done.stdout + done.stderr
                except subprocess.TimeoutExpired as e:
                    code, output = "timeout", (e.stderr or b"").decode(errors="replace")
                aborts = [line for line in output.splitlines() if any(s in line for s in ABORT_SIGNS)]
                failures += code != 0
                print(f"run {i + 1:2d}: exit {code}, {time.monotonic() - started:5.1f} s"
                      + (f"  {aborts[0].strip()}" if aborts else ""), flush=True)
                if code != 0:
                    print("    " + "\n    ".join(output.strip().splitlines()[-15:]), flush=True)
    finally:
        for proc in load:
            proc.terminate()
    print(f"{failures} of {args.runs} runs failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
