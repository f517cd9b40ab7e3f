"""bench/ablate.py, the ablation grid: budgets, the commands each arm runs, resuming, and its table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import ablate  # noqa: E402


def args_for(tmp_path, **overrides):
    values = dict(data="faces.zip", out=str(tmp_path / "grid"), images=6400, image_size=32, batch_size=32,
                  holdout=100, reference=0, eval_samples=50, rt_faces=1000, device="cpu", common="--conv-dim 16")
    values.update(overrides)
    return SimpleNamespace(**values)


def test_equal_images_means_equal_real_images_for_d_so_two_d_steps_train_half_the_g_steps(tmp_path):
    args = args_for(tmp_path)
    plain = ablate.train_command(args, "baseline", 0, [])
    two = ablate.train_command(args, "dsteps2", 0, ablate.arm_flags(ablate.RECIPE_ARMS["dsteps2"], args.images))
    assert plain[plain.index("--steps") + 1] == "200" and two[two.index("--steps") + 1] == "100"
    assert two[-6:] == ["--d-steps", "2", "--lr-g", "2e-4", "--lr-d", "2e-4"] and "--conv-dim" in two
    assert ablate.steps_for(100, 32, 1) == 4  # whole steps, never fewer images than the budget


def test_top_k_reaches_its_floor_a_quarter_of_the_way_through_any_budget(tmp_path):
    from sagan.losses import topk_count
    flags = ablate.arm_flags(ablate.RECIPE_ARMS["topk"], 40_000)
    kimg = float(flags[flags.index("--topk-kimg") + 1])
    assert topk_count(64, 0.5, 9_000, kimg) > 32 and topk_count(64, 0.5, 10_500, kimg) == 32


def test_the_evaluation_uses_the_validation_split_or_its_last_reference_files(tmp_path):
    command = ablate.evaluate_command(args_for(tmp_path, reference=40), "bcr", 1)
    assert command[command.index("--holdout") + 1] == "40" and command[command.index("--num-samples") + 1] == "50"
    assert ablate.evaluate_command(args_for(tmp_path), "bcr", 1)[command.index("--holdout") + 1] == "100"


class FakeRuns:
    """Stands in for subprocess.run: 'trains' by writing the export, 'evaluates' by appending a record."""

    def __init__(self):
        self.calls = []

    def __call__(self, command, **kwargs):
        what = "train" if command[1].endswith("train.py") else command[2]
        self.calls.append(what)
        if what == "train":
            run = Path(command[command.index("--out") + 1])
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run / "g_ema.safetensors").write_bytes(b"")
            (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss/d": 1.0, "loss/g": 0.5,
                                                               "speed/img_per_s": v}) + "\n"
                                                   for s, v in ((10, 1.0), (20, 100.0), (30, 300.0))))
        elif what == "sagan.evaluate":
            run = Path(command[command.index("--run") + 1])
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"checkpoint": "g", "num_samples": 50, "num_reference": 100, "fid": 80.0,
                                    "kid": 0.05, "precision": 0.5, "recall": 0.1,
                                    "attention": {"attn.16": {"mi_bits": 0.6}}}) + "\n")
        stdout = json.dumps({"rt_train": 0.5, "rt_heldout": 0.1, "rt_gap": 0.4, "num_train": 100,
                             "num_heldout": 100})
        return subprocess.CompletedProcess(command, 0, stdout=stdout if what == "sagan.overfit" else None)


def test_an_arm_trains_evaluates_and_measures_r_t_once_and_a_rerun_only_reads_r_t_again(tmp_path):
    args, runs = args_for(tmp_path), FakeRuns()
    row = ablate.run_arm(args, "bcr", "--bcr-weight 10", 0, call=runs)
    assert runs.calls == ["train", "sagan.evaluate", "sagan.overfit"]
    assert (row["fid"], row["overfit"]["rt_gap"], row["attention"]) == (80.0, 0.4, {"attn.16": 0.6})
    assert row["img_per_s"] == 200.0  # the median after the first (warm-up) window
    ablate.run_arm(args, "bcr", "--bcr-weight 10", 0, call=runs)
    assert runs.calls[3:] == ["sagan.overfit"]


def test_a_half_trained_arm_resumes(tmp_path):
    args, runs = args_for(tmp_path), FakeRuns()
    (Path(args.out) / "baseline-seed0" / "checkpoints").mkdir(parents=True)
    (Path(args.out) / "baseline-seed0" / "checkpoints" / "latest.pt").write_bytes(b"")
    commands = []
    ablate.run_arm(args, "baseline", "", 0, call=lambda c, **kw: commands.append(c) or runs(c, **kw))
    assert commands[0][-1] == "--resume"


def test_an_arm_whose_directory_holds_a_run_of_another_budget_is_refused(tmp_path):
    args, runs = args_for(tmp_path), FakeRuns()
    ablate.run_arm(args, "baseline", "", 0, call=runs)
    (Path(args.out) / "baseline-seed0" / "config.json").write_text(json.dumps(
        {"steps": 200, "batch_size": 32, "model": {"image_size": 32}}))
    ablate.run_arm(args, "baseline", "", 0, call=runs)  # the same budget: reused
    with pytest.raises(RuntimeError, match="holds a run of 200 steps at batch 32 and 32 px, not 100 at 32 and 32: "
                                           "give another --out"):
        ablate.run_arm(args_for(tmp_path, images=3200), "baseline", "", 0, call=runs)


def test_finished_arms_are_skipped_and_a_failed_one_is_reported(tmp_path, monkeypatch, capsys):
    out = tmp_path / "grid"
    out.mkdir()
    done = {"arm": "baseline", "seed": 0, "flags": "", "steps": 5, "images": 40_000, "fid": 90.0, "overfit": {},
            "attention": {}}
    (out / "results.json").write_text(json.dumps({"baseline/seed0": done}))
    ran = []

    def fail(args, name, flags, seed):
        ran.append(name)
        raise RuntimeError("training failed (exit 2): see the log")
    monkeypatch.setattr(ablate, "run_arm", fail)
    code = ablate.main(["--data", "x.zip", "--out", str(out), "--arms", "baseline,bcr"])
    printed = capsys.readouterr().out
    assert code == 1 and ran == ["bcr"]
    assert "baseline/seed0: done before, skipped" in printed and "failed: bcr/seed0" in printed
    assert "| `baseline` | 0 | 5 |" in (out / "results.md").read_text()


def test_the_table_shows_attention_mi_when_a_run_has_it_and_means_over_seeds():
    rows = [{"arm": "a", "seed": s, "flags": "", "steps": 10, "d_steps": 2, "img_per_s": 100.0, "fid": fid,
             "kid": 0.01, "precision": 0.5, "recall": 0.2, "overfit": {"rt_train": 0.4, "rt_heldout": 0.2,
                                                                       "rt_gap": 0.2},
             "attention": {"attn.16": mi}} for s, fid, mi in ((0, 50.0, 0.5), (1, 60.0, 0.7))]
    text = ablate.table(rows, "T")
    assert "MI attn.16 (bits)" in text and "| `a` | mean | 10 | 200 | 55.0 | 10.0 | 0.500 | 0.200 |" in text
    assert text.splitlines()[-3].endswith("| 0.60 |")
    plain = ablate.table([{**rows[0], "attention": {}}], "T")
    assert "MI" not in plain and "| `a` | 0 | 10 | 200 | 50.0 |" in plain


@pytest.mark.parametrize("given, message", [("bcr5", "write NAME=FLAGS"), ("=--topk 1", "write NAME=FLAGS")])
def test_a_malformed_arm_is_one_line(tmp_path, given, message):
    with pytest.raises(SystemExit, match=message):
        ablate.chosen_arms(SimpleNamespace(grid="recipe", arm=[given], arms=""))
    with pytest.raises(SystemExit, match="unknown arm.s. nope: choose from baseline"):
        ablate.chosen_arms(SimpleNamespace(grid="recipe", arm=[], arms="nope"))


def test_the_gpu_sessions_grid_arms_exist_and_their_flags_make_a_valid_config(tmp_path):
    """bench/gpu_session.sh runs its default arms unattended on a lent GPU: a misspelt arm or a flag that
    train.py refuses would cost the grid, found only there."""
    import re

    import train
    from sagan.config import from_flags
    script = (Path(ablate.ROOT) / "bench" / "gpu_session.sh").read_text()
    names = re.search(r'\$\{GRID_ARMS:-([\w.,-]+)\}', script).group(1).split(",")
    assert names[0] == "baseline" and len(names) == len(set(names))
    args = args_for(tmp_path, common="")
    for name in names:
        flags = ablate.arm_flags(ablate.GRIDS["all"][name], args.images)
        parsed = train.parse_args(ablate.train_command(args, name, 0, flags)[2:])
        cfg = from_flags({k: v for k, v in vars(parsed).items() if v is not None and k in train.CONFIG_FLAGS})
        assert cfg.seed == 0 and cfg.model.image_size == 32
