"""Issue 20's attention ablation at CPU scale: train each arm with the same data, seed and hyper-parameters,
evaluate its export (FID, KID and the attention figures into the run's metrics.jsonl), and print the table.

    python bench/attention_grid.py --data faces.zip --out runs/attention-grid            # every arm, seed 0
    python bench/attention_grid.py --data faces.zip --out runs/attention-grid --arms today,combo --seeds 1

The README's CPU-scale table: --steps 160 --num-samples 250 --reference-holdout 500 --cache-dir DIR, its arms
split over several such commands run side by side (an arm's runs never share a directory).

A stand-in until the grid harness (bench/ablate.py --grid attention) runs the same arms at full scale.
An arm already evaluated in --out is not trained again, so the grid can be extended arm by arm.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "today": [],
    "dnl": ["--attn-dnl"],
    "cosine": ["--attn-cosine"],
    "rel-pos": ["--attn-rel-pos"],
    "heads2": ["--attn-heads", "2"],
    "gamma0.5": ["--attn-gamma-init", "0.5"],
    "combo": ["--attn-cosine", "--attn-gamma-init", "0.5"],   # the best pair of the single options at CPU scale
}


def run_arm(name: str, seed: int, args: argparse.Namespace) -> Path:
    run = Path(args.out) / f"{name}-s{seed}"
    export = run / "g_ema.safetensors"
    if (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size:
        return run
    common = ["--cache-dir", args.cache_dir, "--no-progress"]
    if not export.is_file():
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--data", args.data, "--holdout", str(args.holdout),
                        "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--steps",
                        str(args.steps), "--seed", str(seed), "--out", str(run), "--log-every", "40",
                        "--sample-every", str(args.steps), "--ckpt-every", str(args.steps), "--export", str(export),
                        *common, *ARMS[name]], check=True)
    subprocess.run([sys.executable, "-m", "sagan.evaluate", "--checkpoint", str(export), "--reference", args.data,
                    "--holdout", str(args.reference_holdout or args.holdout), "--num-samples", str(args.num_samples),
                    "--run", str(run), "--cache-dir", args.cache_dir], check=True, cwd=ROOT)
    return run


def summary(run: Path) -> dict:
    result = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    speeds = [e["speed/img_per_s"] for e in map(json.loads, (run / "log.jsonl").read_text().splitlines())
              if "speed/img_per_s" in e]
    return {"fid": result["fid"], "kid": result["kid"], "num_samples": result["num_samples"],
            "num_reference": result["num_reference"], "img_per_s": sum(speeds[1:]) / max(len(speeds) - 1, 1),
            "attention": result["attention"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--combo", help="the combo arm's train.py flags, e.g. \"--attn-cosine --attn-heads 2\"")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--holdout", type=int, default=2000)
    p.add_argument("--reference-holdout", type=int, default=0, help="FID against the last N files only, a part of "
                   "the validation split (default: all of it)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=320)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--cache-dir", default=".cache")
    args = p.parse_args()
    if args.combo:
        ARMS["combo"] = args.combo.split()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.arms.split(","):
            if name not in ARMS:
                p.error(f"unknown arm {name!r}: choose from {', '.join(ARMS)}")
            rows.append((name, seed, summary(run_arm(name, seed, args))))
    print("| arm | seed | " + " | ".join(f"{layer} MI bits (no pos)" for layer in rows[0][2]["attention"]) +
          " | FID | KID | img/s |")
    for name, seed, s in rows:
        mi = [f"{m['mi_bits']:.2f}" + (f" ({m['mi_bits_no_pos']:.2f})" if "mi_bits_no_pos" in m else "") +
              f", {m['mean_distance_px']:.1f} px" for m in s["attention"].values()]
        print(f"| {name} | {seed} | " + " | ".join(mi) + f" | {s['fid']:.1f} | {s['kid']:.4f} | {s['img_per_s']:.0f} |")
    print(f"FID/KID: {rows[0][2]['num_samples']} generated vs {rows[0][2]['num_reference']} held-out faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
