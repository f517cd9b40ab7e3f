"""One-command ablation grid: train each arm on the same data, seed, hyper-parameters and image budget,
then measure it the same way, and tabulate.

    python bench/ablate.py --data faces.zip --out runs/ablate --grid recipe --images 40000 \
        --image-size 32 --eval-samples 500 --seeds 0 [--device cpu] [--holdout 2000]
    python bench/ablate.py ... --grid attention --arm "attn-best=--attn-dnl --attn-rel-pos"

Each arm is a name and the train.py flags it adds (ARMS, the one place they are defined; ``--arm NAME=FLAGS``
adds or replaces one, ``--arms a,b`` picks some). For each arm and seed it runs ``train.py`` for
``--images`` real images shown to D (so ``--d-steps 2`` trains half as many G steps, at about the cost of the
others), ``python -m sagan.evaluate --run`` on the exported EMA generator (FID, KID, precision, recall; and the
attention issue's per-layer ``mi_bits`` where evaluate records them), ``python -m sagan.overfit`` (ADA's r_t on
training vs held-out faces) and reads training speed from the run's log.jsonl. Results go to
``<out>/results.json`` after every arm and to ``<out>/results.md``, which is printed at the end. Run it again
to go on after an interruption: finished arms are skipped, a half-trained one resumes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> train.py flags. "{topk_kimg}" is filled in so top-k's share reaches its floor a quarter of the way
# through the budget, as Sinha et al.'s 1%-per-epoch decay does a quarter of the way through a 10-minute GPU run.
RECIPE_ARMS = {
    "baseline": "",
    "diffaug-tc": "--diffaugment translation,cutout",
    "diffaug-ctc": "--diffaugment color,translation,cutout",
    "bcr": "--bcr-weight 10",
    "dsteps2": "--d-steps 2 --lr-g 2e-4 --lr-d 2e-4",
    "topk": "--topk 0.5 --topk-kimg {topk_kimg}",
}
# The attention issue's options (its ModelConfig fields): the SAGAN block, each option alone on it, and the
# combinations its CPU-scale grids found best (README), whitened cosine logits at a fixed scale of 20 being the
# default. Each arm states its attention in full, so it means the same whatever the default; the finalists get
# two seeds (--seeds). Cosine logits here learn their scale from 10 unless an arm says otherwise.
SAGAN_BLOCK = "--no-attn-whiten --no-attn-cosine --attn-cosine-scale 10 --no-attn-cosine-fixed"
WHITENED = "--attn-whiten --attn-cosine"
ATTENTION_ARMS = {
    "attn-sagan": SAGAN_BLOCK,
    "attn-dnl": f"{SAGAN_BLOCK} --attn-dnl",
    "attn-cosine": f"{SAGAN_BLOCK} --attn-cosine",
    "attn-rel-pos": f"{SAGAN_BLOCK} --attn-rel-pos",
    "attn-heads2": f"{SAGAN_BLOCK} --attn-heads 2",
    "attn-gamma0.5": f"{SAGAN_BLOCK} --attn-gamma-init 0.5",
    "attn-cosine-gamma0.5": f"{SAGAN_BLOCK} --attn-cosine --attn-gamma-init 0.5",
    "attn-whiten-cosine": f"{WHITENED} --attn-cosine-scale 10 --no-attn-cosine-fixed",
    "attn-whiten-cosine-gamma0.5": f"{WHITENED} --attn-cosine-scale 10 --no-attn-cosine-fixed --attn-gamma-init 0.5",
    "attn-whiten-cosine-scale20": f"{WHITENED} --attn-cosine-scale 20 --no-attn-cosine-fixed",
    "attn-whiten-cosine-fixed20": f"{WHITENED} --attn-cosine-scale 20 --attn-cosine-fixed",
}
GRIDS = {"recipe": RECIPE_ARMS, "attention": ATTENTION_ARMS, "all": {**RECIPE_ARMS, **ATTENTION_ARMS}}
TOPK_DECAYS = 69  # 0.99 ** 69 ~ 0.5: the 1% steps top-k's share takes to fall to its usual floor


def arm_flags(flags: str, images: int) -> list[str]:
    """An arm's train.py flags, with its budget-relative placeholders filled in."""
    return shlex.split(flags.format(topk_kimg=f"{images / 4 / TOPK_DECAYS / 1000:.4g}"))


def d_steps_of(flags: list[str]) -> int:
    """The --d-steps an arm's flags give (1 when they give none)."""
    for i, flag in enumerate(flags):
        if flag == "--d-steps":
            return int(flags[i + 1])
        if flag.startswith("--d-steps="):
            return int(flag.split("=", 1)[1])
    return 1


def steps_for(images: int, batch_size: int, d_steps: int) -> int:
    """G steps that show D ``images`` real images (each step shows it batch_size x d_steps)."""
    return max(1, math.ceil(images / (batch_size * d_steps)))


def train_command(args, name: str, seed: int, flags: list[str]) -> list[str]:
    run = run_dir(args, name, seed)
    steps = steps_for(args.images, args.batch_size, d_steps_of(flags))
    return [sys.executable, str(ROOT / "train.py"), "--data", args.data, "--out", str(run),
            "--holdout", str(args.holdout), "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
            "--steps", str(steps), "--seed", str(seed), "--device", args.device,
            "--cache-dir", str(Path(args.out) / "cache"), "--no-progress", "--log-every", str(max(1, steps // 20)),
            "--sample-every", str(steps), "--ckpt-every", str(max(1, steps // 4)), "--keep-ckpts", "1",
            "--export", str(run / "g_ema.safetensors"), *shlex.split(args.common), *flags]


def evaluate_command(args, name: str, seed: int) -> list[str]:
    run = run_dir(args, name, seed)
    return [sys.executable, "-m", "sagan.evaluate", "--checkpoint", str(run / "g_ema.safetensors"),
            "--reference", args.data, "--holdout", str(args.reference or args.holdout),
            "--num-samples", str(args.eval_samples), "--run", str(run), "--cache-dir", str(Path(args.out) / "cache"),
            "--device", args.device]


def overfit_command(args, name: str, seed: int) -> list[str]:
    return [sys.executable, "-m", "sagan.overfit", "--run", str(run_dir(args, name, seed)),
            "--num-faces", str(min(args.rt_faces, args.holdout)), "--device", args.device]


def run_dir(args, name: str, seed: int) -> Path:
    return Path(args.out) / f"{name}-seed{seed}"


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_evaluation(run: Path, num_samples: int) -> dict | None:
    """The run's last sagan.evaluate record of ``num_samples`` faces (not its --eval-every validations)."""
    found = [r for r in read_jsonl(run / "metrics.jsonl") if "checkpoint" in r and r.get("num_samples") == num_samples]
    return found[-1] if found else None


def training_speed(run: Path) -> dict:
    """Median img/s (G images, as log.jsonl counts them) over the run's log windows after the first (warm-up),
    and the last logged losses."""
    lines = [r for r in read_jsonl(run / "log.jsonl") if "speed/img_per_s" in r]
    speeds = [r["speed/img_per_s"] for r in (lines[1:] or lines)]
    last = lines[-1] if lines else {}
    return {"img_per_s": statistics.median(speeds) if speeds else None,
            "loss_d": last.get("loss/d"), "loss_g": last.get("loss/g")}


def run_arm(args, name: str, flags_text: str, seed: int, call=subprocess.run) -> dict:
    """Train (or resume), evaluate and measure one arm; returns its results row. ``call`` runs a command."""
    run = run_dir(args, name, seed)
    flags = arm_flags(flags_text, args.images)
    d_steps = d_steps_of(flags)
    log = Path(args.out) / "logs" / f"{name}-seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    row = {"arm": name, "seed": seed, "flags": " ".join(flags), "d_steps": d_steps,
           "steps": steps_for(args.images, args.batch_size, d_steps), "images": args.images}

    def step(command: list[str], what: str):
        with open(log, "a") as out:
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            started = time.perf_counter()
            done = call(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {done.returncode}): see {log}")
        return time.perf_counter() - started

    saved = run / "config.json"
    if saved.is_file():  # a run of this --out and arm, from before: it must be the run this budget asks for
        cfg = json.loads(saved.read_text())
        found = (cfg.get("steps"), cfg.get("batch_size"), cfg.get("model", {}).get("image_size"))
        if found != (row["steps"], args.batch_size, args.image_size):
            raise RuntimeError(f"{run} holds a run of {found[0]} steps at batch {found[1]} and {found[2]} px, not "
                               f"{row['steps']} at {args.batch_size} and {args.image_size}: give another --out")
    if not (run / "g_ema.safetensors").is_file():
        command = train_command(args, name, seed, flags)
        if (run / "checkpoints" / "latest.pt").is_file():
            command.append("--resume")
        row["train_s"] = step(command, "training")
    if last_evaluation(run, args.eval_samples) is None:
        row["evaluate_s"] = step(evaluate_command(args, name, seed), "evaluation")
    evaluation = last_evaluation(run, args.eval_samples) or {}
    for key in ("fid", "kid", "precision", "recall", "num_samples", "num_reference"):
        row[key] = evaluation.get(key)
    row["attention"] = {layer: values.get("mi_bits") for layer, values in (evaluation.get("attention") or {}).items()}
    with open(log, "a") as out:
        command = overfit_command(args, name, seed)
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        measured = call(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=out, text=True)
    if measured.returncode != 0:
        raise RuntimeError(f"r_t failed (exit {measured.returncode}): see {log}")
    row["overfit"] = json.loads(measured.stdout.strip().splitlines()[-1])
    row.update(training_speed(run))
    return row


def _cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def table(rows: list[dict], title: str) -> str:
    """A markdown table of ``rows`` (results of run_arm), in order, with the per-layer attention MI where any
    row has it; then the means over seeds of arms run with more than one."""
    layers = sorted({layer for r in rows for layer in r.get("attention", {})})
    head = ["arm", "seed", "G steps", "img/s (D real)", "FID", "KID x1e3", "precision", "recall",
            "r_t train", "r_t held-out", "r_t gap", *[f"MI {layer} (bits)" for layer in layers]]
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(r, seed):
        speed = None if r.get("img_per_s") is None else r["img_per_s"] * r.get("d_steps", 1)
        kid = None if r.get("kid") is None else r["kid"] * 1e3
        o = r.get("overfit", {})
        cells = [f"`{r['arm']}`", seed, str(r.get("steps", "")), _cell(speed, ".0f"), _cell(r.get("fid"), ".1f"),
                 _cell(kid, ".1f"), _cell(r.get("precision"), ".3f"), _cell(r.get("recall"), ".3f"),
                 _cell(o.get("rt_train"), "+.3f"), _cell(o.get("rt_heldout"), "+.3f"), _cell(o.get("rt_gap"), "+.3f"),
                 *[_cell(r.get("attention", {}).get(layer), ".2f") for layer in layers]]
        return "| " + " | ".join(cells) + " |"
    lines += [line(r, str(r["seed"])) for r in rows]
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    for arm, group in by_arm.items():
        if len(group) > 1:
            lines.append(line(mean_row(group), "mean"))
    flags = {r["arm"]: r["flags"] for r in rows}
    lines += ["", "Flags: " + "; ".join(f"`{a}` = `{f or '(none)'}`" for a, f in flags.items())]
    return "\n".join(lines) + "\n"


def mean_row(group: list[dict]) -> dict:
    """The mean of numeric results over an arm's seeds."""
    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None
    keys = ("img_per_s", "fid", "kid", "precision", "recall")
    row = {**group[0], **{k: mean([r.get(k) for r in group]) for k in keys}}
    row["overfit"] = {k: mean([r.get("overfit", {}).get(k) for r in group]) for k in ("rt_train", "rt_heldout",
                                                                                    "rt_gap")}
    row["attention"] = {layer: mean([r.get("attention", {}).get(layer) for r in group])
                        for layer in group[0].get("attention", {})}
    return row


def describe(args, rows: list[dict]) -> str:
    samples = {(r.get("num_samples"), r.get("num_reference")) for r in rows}
    faces = {(r.get("overfit", {}).get("num_train"), r.get("overfit", {}).get("num_heldout")) for r in rows}
    return (f"{args.image_size} px, batch {args.batch_size}, {args.images:,} real images per arm, device "
            f"{args.device} ({machine()}). FID/KID/precision/recall: "
            + ", ".join(f"{g} generated vs {n} held-out faces" for g, n in sorted(samples, key=str))
            + "; r_t: " + ", ".join(f"{t} training vs {h} held-out faces" for t, h in sorted(faces, key=str)) + ".")


def machine() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name()
    except ImportError:
        pass
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return f"{text.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--data", required=True, help="folder or .zip of faces (the same for every arm)")
    a("--out", required=True, help="directory for the runs, logs, results.json and results.md")
    a("--grid", choices=sorted(GRIDS), default="recipe")
    a("--arms", default="", help="comma-separated arm names to run (default: the whole grid, in order)")
    a("--arm", action="append", default=[], metavar="NAME=FLAGS", help="add or replace an arm")
    a("--images", type=int, default=40_000, help="real images D trains on, per arm (default 40000)")
    a("--image-size", type=int, default=32, choices=(32, 64, 128))
    a("--batch-size", type=int, default=64)
    a("--holdout", type=int, default=2000, help="validation split: the last N files (default 2000)")
    a("--reference", type=int, default=0, metavar="N",
      help="FID reference: the last N files, within the validation split (default: all of it)")
    a("--eval-samples", type=int, default=1000, help="generated faces per FID (default 1000)")
    a("--rt-faces", type=int, default=1000, help="faces of each split for r_t (default 1000)")
    a("--seeds", default="0", help="comma-separated seeds (default 0)")
    a("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    a("--common", default="", help="train.py flags for every arm, e.g. \"--compile\"")
    a("--print-only", action="store_true", help="print the commands of the first arm and stop")
    a("--table-only", action="store_true", help="write and print the table of the arms results.json holds, run none")
    args = p.parse_args(argv)
    if args.reference > args.holdout:
        p.error(f"--reference {args.reference} must be within the validation split (--holdout {args.holdout}).")
    return args


def chosen_arms(args) -> dict[str, str]:
    arms = dict(GRIDS[args.grid])
    for given in args.arm:
        name, sep, flags = given.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"error: --arm {given!r}: write NAME=FLAGS, e.g. \"bcr5=--bcr-weight 5\".")
        arms[name.strip()] = flags
    if args.arms:
        names = [n.strip() for n in args.arms.split(",") if n.strip()]
        unknown = [n for n in names if n not in arms]
        if unknown:
            raise SystemExit(f"error: unknown arm(s) {', '.join(unknown)}: choose from {', '.join(arms)} "
                             "or define one with --arm NAME=FLAGS.")
        arms = {n: arms[n] for n in names}
    return arms


def main(argv=None) -> int:
    args = parse_args(argv)
    arms, seeds = chosen_arms(args), [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out)
    if args.print_only:
        name, flags = next(iter(arms.items()))
        for command in (train_command(args, name, seeds[0], arm_flags(flags, args.images)),
                        evaluate_command(args, name, seeds[0]), overfit_command(args, name, seeds[0])):
            print(shlex.join(command))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    failed = []
    if args.table_only:
        arms, seeds = {}, []
    for seed in seeds:
        for name, flags in arms.items():
            key, filled = f"{name}/seed{seed}", " ".join(arm_flags(flags, args.images))
            if key in results and results[key].get("flags") == filled and results[key].get("images") == args.images:
                print(f"{key}: done before, skipped", flush=True)
                continue
            print(f"{key}: {filled or '(no extra flags)'}", flush=True)
            try:
                results[key] = run_arm(args, name, flags, seed)
            except (RuntimeError, ValueError) as e:
                print(f"{key}: {e}", flush=True)
                failed.append(key)
                continue
            results_path.write_text(json.dumps(results, indent=1))
            r = results[key]
            print(f"{key}: FID {_cell(r['fid'], '.1f')}  r_t gap {_cell(r['overfit'].get('rt_gap'), '+.3f')}",
                  flush=True)
    rows = list(results.values()) if args.table_only else \
        [results[f"{n}/seed{s}"] for s in seeds for n in arms if f"{n}/seed{s}" in results]
    report = table(rows, f"Ablation, grid {args.grid}") + "\n" + describe(args, rows) + "\n"
    (out / "results.md").write_text(report)
    print(report)
    if failed:
        print(f"failed: {', '.join(failed)} (logs in {out / 'logs'}); run the same command again to retry them.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
