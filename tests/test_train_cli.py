"""train.py, the command line: training, resuming and exporting as a user runs them, and one-line
messages for what a user can get wrong."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

import train as train_cli
from sagan.checkpoint import load_generator, load_training_state, read_export_metadata
from sagan.training import TrainingError
from tests.factories import train_tiny

from conftest import ROOT


def _cli(*args):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_trains_resumes_and_exports(tmp_path, faces_dir, capsys):
    common = ["--image-size", "32", "--conv-dim", "8", "--z-dim", "8", "--batch-size", "4", "--precision", "fp32",
              "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run"), "--log-every", "1"]
    first = _cli("--data", os.path.relpath(faces_dir, ROOT), "--steps", "2", *common)  # as a user runs it
    assert first.returncode == 0, first.stderr
    assert f"trained to step 2; the run is in {tmp_path / 'run'}" in first.stdout
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["g_attn"] == [8, 16] and cfg["preset"] == "sagan"
    assert cfg["data"] == str(faces_dir)  # saved absolute: a resumed run finds it from any directory
    # The rest in this process: the same main(), without a second start of Python and torch.
    # A run directory will do for --resume.
    assert train_cli.main(["--resume", str(tmp_path / "run"), "--steps", "3", "--no-progress"]) == 0
    assert load_training_state(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 3
    assert train_cli.main(["--resume", "--preset", "dcgan", "--out", str(tmp_path / "run")]) == 2
    assert "cannot change --preset when resuming" in capsys.readouterr().err
    assert train_cli.main(["--out", str(tmp_path / "run"), "--export", str(tmp_path / "g.safetensors")]) == 0
    assert "step 3" in capsys.readouterr().out
    assert load_generator(tmp_path / "g.safetensors").cfg.image_size == 32
    metadata = read_export_metadata(tmp_path / "g.safetensors")
    assert metadata["standing_stats_batches"] == "40"
    # The file says which run made it: the run's options as its config.json has them, less the model (in "config").
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert json.loads(metadata["training"]) == {k: v for k, v in saved.items() if k != "model"}
    assert saved["steps"] == 3 and saved["out"] == str(tmp_path / "run")
    assert train_cli.main(["--out", str(tmp_path / "run"), "--export", str(tmp_path / "g.safetensors"),
                           "--standing-stats", "0"]) == 0
    assert read_export_metadata(tmp_path / "g.safetensors")["standing_stats_batches"] == "0"


def test_time_limit_stops_at_a_log_step_with_a_checkpoint_and_export(tmp_path, faces_dir, capsys):
    out, exported = tmp_path / "run", tmp_path / "g.safetensors"
    assert train_cli.main(["--data", str(faces_dir), "--out", str(out), "--image-size", "32", "--conv-dim", "8",
                           "--z-dim", "8", "--batch-size", "4", "--precision", "fp32", "--device", "cpu",
                           "--no-progress", "--steps", "1000", "--log-every", "3", "--ckpt-every", "100",
                           "--max-minutes", "1e-9", "--export", str(exported)]) == 0
    printed = capsys.readouterr().out
    assert load_training_state(out / "checkpoints" / "latest.pt")["step"] == 3
    assert "step 3" in printed and load_generator(exported).cfg.image_size == 32
    saved = json.loads((out / "config.json").read_text())  # exported by training itself, with its options
    assert json.loads(read_export_metadata(exported)["training"]) == {k: v for k, v in saved.items() if k != "model"}
    assert f"stopped by --max-minutes at step 3 of 1000: continue with --resume {out}" in printed
    assert (out / "samples" / "step-0000003.png").is_file()
    assert train_cli.main(["--resume", "--out", str(out), "--steps", "5", "--max-minutes", "0", "--no-progress"]) == 0
    assert load_training_state(out / "checkpoints" / "latest.pt")["step"] == 5


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train_cli.main(["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no images" in err
    assert not (tmp_path / "run").exists()
    assert train_cli.main(["--out", str(tmp_path / "nothing"), "--export", str(tmp_path / "g.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no checkpoint" in err


@pytest.mark.parametrize("args, message", [
    (["--log-every", "0"], "--log-every must be at least 1, not 0"),
    (["--batch-size", "-4"], "--batch-size must be at least 1, not -4"),
    (["--export-dtype", "fp16"], "--export-dtype says how --export writes: add --export"),
    (["--standing-stats", "0"], "--standing-stats says how --export writes: add --export"),
    (["--export", "{tmp}/g.safetensors", "--standing-stats", "-1"], "--standing-stats must be 0 (keep G's BatchNorm "
     "statistics) or more, not -1"),
    (["--eval-data", "{tmp}/faces"], "--eval-data names the faces --eval-every measures FID against"),
    (["--eval-every", "2", "--eval-data", "{tmp}/nothing.zip", "--device", "cpu"], "data path '{tmp}/nothing.zip' "
     "does not exist"),
    (["--export", "{tmp}"], "cannot export to '{tmp}': it is a directory"),
    (["--resume"], "nothing to resume: no checkpoint at '{tmp}/run/checkpoints/latest.pt'. Start a new run"),
    (["--export", "{tmp}/g.safetensors", "--export-best"], "--export-best exports the state with the lowest "
     "validation FID: add --eval-every N and --holdout N"),
    (["--out", "{tmp}/faces/0000.jpg/run"], "cannot write --out '{tmp}/faces/0000.jpg/run': "
     "'{tmp}/faces/0000.jpg' is a file, not a folder. Choose another --out"),
    (["--cache-dir", "{tmp}/faces/0001.jpg/cache"], "cannot write --cache-dir"),
    (["--num-grid", "0"], "--num-grid must be from 1 to 1024 faces"),
    (["--out", "{tmp}/faces/run"], "--out '{tmp}/faces/run' is inside --data '{tmp}/faces': its sample grids would "
     "be read as training images"),
    (["--export", "{tmp}/faces/0000.jpg"], "will not export to '{tmp}/faces/0000.jpg': it exists and is not a "
     "generator exported by sagan-anime"),
    (["--inception-sha256", "abc"], "--inception-sha256 names the network --eval-every measures FID with"),
    (["--g-attn", "7"], "error: --g-attn 7: the generator has no 7x7 feature map at image size 64: choose from "
     "4,8,16,32."),
    (["--image-size", "32", "--d-attn", "16,32"], "error: --d-attn 32: the discriminator has no 32x32 feature map"),
    (["--z-dim", "0"], "error: --z-dim must be at least 1, not 0."),
    (["--diffaugment", "rotate"], "error: --diffaugment: unknown DiffAugment policy 'rotate'"),
    (["--d-steps", "0"], "error: --d-steps must be at least 1, not 0."),
    (["--bcr-weight", "10", "--bcr-augment", ""], "error: --bcr-weight needs an augmentation"),
    (["--topk", "2"], "error: --topk is the share of fakes G's loss keeps at the end, from 0 (off) to 1, not 2.0."),
])
def test_cli_misuse_is_one_line_before_anything_is_written(args, message, tmp_path, faces_dir, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "run").exists()


def test_a_holdout_larger_than_the_data_says_what_to_fix_in_a_new_run_and_in_a_resumed_one(tmp_path, faces_dir,
                                                                                           capsys):
    assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "new"), "--holdout", "40"]) == 2
    assert capsys.readouterr().err == "error: --holdout 40 must be between 0 and the number of image files (12) - 1.\n"
    assert not (tmp_path / "new").exists()
    train_tiny(faces_dir, tmp_path / "run", holdout=4)
    for path in sorted(faces_dir.iterdir())[3:]:  # the data set has lost files since the run started
        path.unlink()
    assert train_cli.main(["--resume", str(tmp_path / "run"), "--steps", "5", "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"error: the resumed run keeps the --holdout 4 it started with, but --data "
                                       f"{str(faces_dir)!r} holds only 3 image files: restore its files, or start a "
                                       "new run (another --out) with a smaller --holdout.\n")


def test_a_resumed_run_announces_once_the_changed_settings_that_change_how_it_trains(tmp_path, faces_dir,
                                                                                     monkeypatch, capsys):
    run = str(tmp_path / "run")
    train_tiny(faces_dir, run, steps=2)
    assert train_cli.main(["--resume", run, "--steps", "3", "--seed", "5", "--batch-size", "2", "--log-every", "3",
                           "--no-progress"]) == 0
    assert capsys.readouterr().out == (f"resuming with changed settings: --batch-size 4 -> 2, --seed 0 -> 5\n"
                                       f"trained to step 3; the run is in {run}\n")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["steps"], saved["seed"], saved["batch_size"], saved["log_every"]) == (3, 5, 2, 3)
    assert train_cli.main(["--resume", run, "--steps", "4", "--seed", "5", "--no-progress"]) == 0
    assert "resuming with" not in capsys.readouterr().out  # what the run already had is no change
    # Under torchrun rank 0 alone says it, as it says the rest.
    monkeypatch.setattr(train_cli, "train", lambda cfg, **kwargs: SimpleNamespace(step=cfg.steps))
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert train_cli.main(["--resume", run, "--steps", "9", "--diffaugment", "color"]) == 0
        assert ("resuming with changed settings: --diffaugment '' -> 'color'\n" in capsys.readouterr().out) == \
            (rank == "0")


def test_export_alone_refuses_training_flags_it_would_ignore(tmp_path, capsys):
    assert train_cli.main(["--out", str(tmp_path), "--export", str(tmp_path / "g.safetensors"), "--steps", "100",
                           "--compile"]) == 2
    assert "so --compile, --steps would be ignored: add --resume" in capsys.readouterr().err


def test_interrupting_says_whether_there_is_a_checkpoint_to_resume(tmp_path, faces_dir, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_cli, "train", interrupted)
    out = tmp_path / "run"
    assert train_cli.main(["--data", str(faces_dir), "--out", str(out)]) == 130
    assert "no checkpoint was written yet" in capsys.readouterr().err
    train_tiny(faces_dir, out)
    assert train_cli.main(["--resume", str(out), "--steps", "9"]) == 130  # no --out: the run's own directory
    assert f"continue from the last checkpoint ({out / 'checkpoints' / 'latest.pt'}) with --resume" in \
        capsys.readouterr().err


def test_cuda_graphs_on_the_cpu_is_one_clear_line(tmp_path, faces_dir, capsys):
    assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "run"), "--device", "cpu",
                           "--cuda-graphs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "--cuda-graphs (given, or kept by a resumed run) needs a CUDA GPU" in err and "--no-cuda-graphs" in err


def test_a_resumed_process_runs_only_the_steps_after_the_checkpoint(tmp_path, faces_dir):
    """The data, latents and augmentations are pure functions of (seed, step): a resume that restored
    nothing would retrain from step 0 and reach the same weights. So the resumed process's own log
    must start at the checkpoint's step and hold only the steps after it, and the weights must be the
    uninterrupted run's (DiffAugment on: its random stream is part of what is restored)."""
    common = ["--data", str(faces_dir), "--image-size", "32", "--conv-dim", "8", "--z-dim", "8", "--batch-size", "4",
              "--precision", "fp32", "--device", "cpu", "--no-progress", "--log-every", "1",
              "--diffaugment", "color,translation,cutout"]
    for out, steps in (("straight", "5"), ("resumed", "3")):
        done = _cli(*common, "--out", str(tmp_path / out), "--steps", steps)
        assert done.returncode == 0, done.stderr
    done = _cli("--resume", str(tmp_path / "resumed"), "--steps", "5", "--no-progress")
    assert done.returncode == 0, done.stderr
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    starts = [i for i, record in enumerate(log) if "event/start" in record]
    assert [log[i]["step"] for i in starts] == [0, 3]  # the second process began at the checkpoint's step
    assert [r["step"] for r in log[starts[1]:] if "loss/d" in r] == [4, 5]  # and trained steps 4 and 5 alone
    straight, resumed = (load_training_state(tmp_path / out / "checkpoints" / "latest.pt")
                         for out in ("straight", "resumed"))
    assert straight["step"] == resumed["step"] == 5
    for name in ("G", "D", "G_ema"):
        assert all(torch.equal(value, resumed[name][key]) for key, value in straight[name].items()), name


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path, faces_dir):
    out = tmp_path / "run"
    args = [sys.executable, "train.py", "--data", str(faces_dir), "--out", str(out), "--image-size", "32",
            "--conv-dim", "8", "--z-dim", "8", "--batch-size", "4", "--precision", "fp32", "--device", "cpu",
            "--no-progress", "--ckpt-every", "1", "--keep-ckpts", "2", "--steps", "100000"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        latest = out / "checkpoints" / "latest.pt"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (latest.exists() and load_training_state(latest)["step"] >= 3):
            time.sleep(0.2)
        time.sleep(0.37)  # a checkpoint is written every step, so the kill often lands inside a write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = load_training_state(latest)["step"]
    assert killed_at >= 3
    # Bounded however long it runs: --keep-ckpts, plus one where the kill fell between writing a
    # checkpoint and deleting the oldest.
    assert len(list((out / "checkpoints").glob("step-*.pt"))) <= 3
    assert train_cli.main(["--resume", "--out", str(out), "--steps", str(killed_at + 2), "--no-progress"]) == 0
    assert load_training_state(latest)["step"] == killed_at + 2
    assert not list((out / "checkpoints").glob(".*tmp*"))
    assert len(list((out / "checkpoints").glob("step-*.pt"))) == 2  # the resumed run's retention caught up


def test_sigterm_ends_a_run_like_ctrl_c_with_where_to_resume(tmp_path, faces_dir):
    out = tmp_path / "run"
    args = [sys.executable, "train.py", "--data", str(faces_dir), "--out", str(out), "--image-size", "32",
            "--conv-dim", "8", "--z-dim", "8", "--batch-size", "4", "--precision", "fp32", "--device", "cpu",
            "--no-progress", "--ckpt-every", "1", "--steps", "100000"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = out / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not latest.exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: continue from the last checkpoint ({latest}) with --resume."
    assert load_training_state(latest)["step"] >= 1


def test_validation_needs_a_holdout_split_and_best_export_needs_validation(tmp_path, faces_dir, capsys):
    for holdout in (0, 1):  # one face has no covariance
        with pytest.raises(TrainingError, match="at least 2 faces: add --holdout N"):
            train_tiny(faces_dir, tmp_path / "run", eval_every=2, holdout=holdout)
    train_tiny(faces_dir, tmp_path / "plain", steps=2)
    capsys.readouterr()
    assert train_cli.main(["--out", str(tmp_path / "plain"), "--export", str(tmp_path / "g.safetensors"),
                           "--export-best"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--eval-every" in err
    assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "b"), "--holdout", "4",
                           "--eval-every", "2", "--inception", str(tmp_path / "missing.pt"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no Inception network" in err


def test_resuming_into_another_runs_directory_is_refused(tmp_path, faces_dir, capsys):
    """--resume RUN_A --out RUN_B would overwrite RUN_B's checkpoints: refused, RUN_B untouched. An empty
    --out, or the run's own directory, is where a resumed run goes."""
    train_tiny(faces_dir, tmp_path / "a")
    train_tiny(faces_dir, tmp_path / "b")
    b_latest = (tmp_path / "b" / "checkpoints" / "latest.pt").read_bytes()
    assert train_cli.main(["--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--steps", "5",
                           "--no-progress"]) == 2
    assert "already holds another run" in capsys.readouterr().err
    assert (tmp_path / "b" / "checkpoints" / "latest.pt").read_bytes() == b_latest
    assert train_cli.main(["--resume", str(tmp_path / "a"), "--out", str(tmp_path / "branch"), "--steps", "4",
                           "--no-progress"]) == 0
    assert train_cli.main(["--resume", str(tmp_path / "a" / "checkpoints" / "step-0000002.pt"), "--out",
                           str(tmp_path / "a"), "--steps", "4", "--no-progress"]) == 0  # back to step 2, same run
    assert load_training_state(tmp_path / "a" / "checkpoints" / "latest.pt")["step"] == 4


def test_a_failed_write_mid_run_is_one_line_naming_the_file(tmp_path, faces_dir, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "checkpoints" / "latest.pt"))
    monkeypatch.setattr(train_cli, "train", disk_full)
    assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == (f"error: cannot read or write {tmp_path / 'run' / 'checkpoints' / 'latest.pt'}: "
                                       "No space left on device.\n")


def test_under_torchrun_one_rank_per_machine_reports_a_shared_mistake_and_each_rank_its_own_failed_write(
        tmp_path, faces_dir, monkeypatch, capsys):
    """The ranks of one machine parse the same flags and see the same files, so a mistake is said
    once per machine, not once per process; a failed write may be one rank's own, so every rank says
    it, with its rank."""
    bad_value = ["--data", str(faces_dir), "--out", str(tmp_path / "run"), "--lr-g", "-1"]
    message = "error: --lr-g must be a number above 0, not -1.0.\n"
    monkeypatch.setenv("WORLD_SIZE", "4")  # two machines of two processes
    for rank, local_rank, expected in (("0", "0", message), ("1", "1", ""), ("2", "0", "rank 2: " + message)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        assert train_cli.main(bad_value) == 2
        assert capsys.readouterr().err == expected
        with pytest.raises(SystemExit):  # a malformed flag, refused by the parser itself
            train_cli.main(["--steps", "abc"])
        assert ("invalid int value: 'abc'" in capsys.readouterr().err) == (expected != "")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "/scratch/cache/faces.npy")
    monkeypatch.setattr(train_cli, "train", disk_full)
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "run")]) == 1
        assert capsys.readouterr().err == (f"rank {rank}: error: cannot read or write /scratch/cache/faces.npy: "
                                           "No space left on device.\n")


def test_a_stray_rank_variable_without_torchrun_still_reports(tmp_path, faces_dir, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")  # left in the environment by something else: one process is rank 0
    assert train_cli.main(["--data", str(faces_dir), "--out", str(tmp_path / "run"), "--lr-g", "-1"]) == 2
    assert capsys.readouterr().err == "error: --lr-g must be a number above 0, not -1.0.\n"


def test_a_resumed_run_measures_fid_with_the_network_it_started_with(tmp_path, faces_dir, monkeypatch, capsys):
    """--inception and --inception-sha256 are part of the run's config: resuming without them keeps
    measuring with the same network, so its best FID compares like with like."""
    loaded, network = [], "AB" * 32
    monkeypatch.setattr(train_cli.inception, "load",
                        lambda path, device, sha256, fixed: loaded.append((path, sha256, fixed)))
    saved = []

    def interrupted(cfg, **kwargs):
        saved.append(cfg)
        raise KeyboardInterrupt
    monkeypatch.setattr(train_cli, "train", interrupted)
    monkeypatch.chdir(tmp_path)
    assert train_cli.main(["--data", str(faces_dir), "--out", "new", "--holdout", "4", "--eval-every", "2",
                           "--inception", "net.pt", "--inception-sha256", network]) == 130
    assert (saved[0].inception, saved[0].inception_sha256) == (str(tmp_path / "net.pt"), network.lower())
    train_tiny(faces_dir, tmp_path / "run", holdout=4, inception=saved[0].inception,
               inception_sha256=saved[0].inception_sha256)
    assert train_cli.main(["--resume", str(tmp_path / "run"), "--steps", "9", "--eval-every", "2"]) == 130
    # A wrong file's message then asks for a copy of that network, not for another --inception-sha256.
    net = str(tmp_path / "net.pt")
    assert loaded == [(net, network.lower(), False), (net, network.lower(), True)]
    assert train_cli.main(["--resume", str(tmp_path / "run"), "--steps", "9", "--eval-every", "2",
                           "--inception-sha256", "cd" * 32]) == 2
    assert "cannot change --inception-sha256 when resuming" in capsys.readouterr().err


def test_a_moved_run_resumes_where_it_now_lies(tmp_path, faces_dir):
    """--resume RUN_DIR without --out continues the run in RUN_DIR, not in the directory its config
    was saved from (a copy would otherwise write into, or be refused by, the original)."""
    train_tiny(faces_dir, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    assert train_cli.main(["--resume", str(tmp_path / "moved"), "--steps", "4", "--no-progress"]) == 0
    assert load_training_state(tmp_path / "moved" / "checkpoints" / "latest.pt")["step"] == 4
    assert load_training_state(tmp_path / "a" / "checkpoints" / "latest.pt")["step"] == 3
    assert json.loads((tmp_path / "moved" / "config.json").read_text())["out"] == str(tmp_path / "moved")


def test_export_alone_needs_a_run_directory_not_a_file(tmp_path, faces_dir, capsys):
    train_tiny(faces_dir, tmp_path / "run")
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    assert train_cli.main(["--out", str(latest), "--export", str(tmp_path / "g.safetensors"), "--export-best"]) == 2
    assert "is a file: --out names a run directory" in capsys.readouterr().err
    assert not (tmp_path / "g.safetensors").exists()


def test_skipped_images_are_one_warning_line(tmp_path, faces_dir):
    (faces_dir / "broken.jpg").write_bytes(b"not a jpeg")
    result = _cli("--data", str(faces_dir), "--out", str(tmp_path / "run"), "--image-size", "32", "--conv-dim", "8",
                  "--z-dim", "8", "--batch-size", "4", "--precision", "fp32", "--device", "cpu", "--no-progress",
                  "--steps", "1")
    assert result.returncode == 0, result.stderr
    assert "warning: skipped 1 of 13 files that could not be read or decoded as images (e.g. broken.jpg).\n" in \
        result.stderr
    assert "warnings.warn" not in result.stderr and "UserWarning" not in result.stderr
