"""bench/load_app.py stays runnable: a few users and requests, cheap enough for every test run."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def run_script(*args, timeout=120):
    return subprocess.run([sys.executable, "bench/load_app.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_load_script_runs_and_reports(app_url):
    # Against the session's app (launching another would cost its start-up again).
    done = run_script("--url", app_url, "--users", "3", "--requests", "3", "--timeout", "100")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 users x 3 requests: 9/9 answered" in done.stdout
    assert "latency p50" in done.stdout and "requests/s" in done.stdout
    assert "errors: 0, mismatches: 0" in done.stdout


def test_load_script_refuses_a_missing_checkpoint_and_a_remote_url(tmp_path):
    done = run_script("--checkpoint", str(tmp_path / "none"))
    assert done.returncode == 2 and "no checkpoint at" in done.stderr
    done = run_script("--url", "http://example.com/")
    assert done.returncode == 2 and "loopback" in done.stderr


def test_load_script_checks_its_numbers_with_a_url_too():
    # With --url the range checks used to be skipped, and --users 0 crashed in ThreadPoolExecutor(0).
    done = run_script("--url", "http://127.0.0.1:7860/", "--users", "0", "--timeout", "-5")
    assert done.returncode == 2 and "--users and --requests must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr
