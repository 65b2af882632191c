"""Paper-miniature throughput on this machine, side by side in one run:

1. `nanoemox train paper` on the miniature checkpoints (`nanoemox make-miniature`): samples/s per
   phase in fp32 and in bf16 autocast (the recipe's default), and the ratios between phases;
2. a phase-3 run on 2 processes (torchrun, gloo): DDP vs FSDP2, seconds per step.

    python benchmarks/paper_miniature.py [--steps 12] [--n 32] [--out DIR]

Prints one markdown block (for BENCHMARKS.md). Medians over steps, the first step of each phase left out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MANIFESTS = ("m3ed", "crema_d", "caer", "ferv39k", "mintrec_train", "mintrec2_train", "mer_caption_plus", "merr_fine", "avamerg_train")
PHASE3 = """preset: paper
seed: 0
datasets: {{d: {{manifest: '{{data}}/train.jsonl'}}}}
phases:
  "3": {{init: base, steps: {steps}, batch_size: 4, lr: 1.0e-4, save_every: 100000, log_every: 1,
        mixture: [{{dataset: d, task: mer}}, {{dataset: d, task: ovmer}}, {{dataset: d, task: mir}}]}}
"""


def _run(cmd: list[str], env: dict) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")


def _sps(out: Path) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "samples_per_s" in r:
            per.setdefault(r["phase"], []).append(r["samples_per_s"])
    return {p: statistics.median(v[1:] or v) for p, v in per.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--n", type=int, default=32, help="SynthAffect clips standing in for every benchmark file")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    root = Path(args.out or tempfile.mkdtemp(prefix="nanoemox-paper-mini-"))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("ACCELERATE_USE_FSDP", None)
    cli = [sys.executable, "-m", "nanoemox.cli"]
    from nanoemox.modeling.pretrained.miniature import write_miniature

    env.update({k: str(v) for k, v in write_miniature(root / "miniature").items()})
    data = root / "data"
    if not (data / "train.jsonl").is_file():
        _run([*cli, "synth", str(data), "--n", str(args.n), "--seed", "1", "--no-progress"], env)
    for name in MANIFESTS:
        (data / f"{name}.jsonl").write_text((data / "train.jsonl").read_text())
    steps = [f"phases.{p}.steps={args.steps}" for p in ("1a", "1b", "2", "3")]
    common = [*steps, "defaults.batch_size=4", "defaults.save_every=100000", "defaults.warmup_steps=0", "defaults.log_every=1"]
    sps = {}
    for precision in ("no", "bf16"):
        out = root / f"run-{precision}"
        _run([*cli, "train", "paper", "--data", str(data), "--out", str(out), "--no-progress", "--feature-cache", str(root / "features"),
              *common, f"defaults.precision='{precision}'"], env)
        sps[precision] = _sps(out)
    recipe = root / "phase3.yaml"
    recipe.write_text(PHASE3.format(steps=args.steps))
    step_s = {}
    for i, (name, fsdp) in enumerate((("DDP", False), ("FSDP2", True))):
        out = root / f"run-{name}"
        e = dict(env, **({"ACCELERATE_USE_FSDP": "true"} if fsdp else {}))
        _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29731 + i), *cli[1:], "train", str(recipe),
              "--data", str(data), "--out", str(out), "--no-progress", "--feature-cache", str(root / "features")], e)
        step_s[name] = 4 / _sps(out)["3"]  # global batch 4 per step
    print("| phase | fp32 samples/s | bf16 samples/s | bf16 / fp32 | fp32 relative to 1a |")
    print("|---|---|---|---|---|")
    for p in ("1a", "1b", "2", "3"):
        f, b = sps["no"][p], sps["bf16"][p]
        print(f"| {p} | {f:.2f} | {b:.2f} | {b / f:.2f}x | {f / sps['no']['1a']:.2f}x |")
    print()
    print("| phase 3, 2 processes (gloo) | s / step (global batch 4) |")
    print("|---|---|")
    for k, v in step_s.items():
        print(f"| {k} | {v:.3f} |")
    print(f"\nFSDP2 / DDP step time: {step_s['FSDP2'] / step_s['DDP']:.2f}x; {args.steps} steps per phase, {args.n} clips; folder {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
