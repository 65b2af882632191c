"""`nanoemox train` and `nanoemox demo`."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="the main job: generate SynthAffect, train the small model through P2E, evaluate, analyse a clip")
    d.add_argument("--quick", action="store_true", help="tiny preset and a small corpus (a few minutes)")
    d.add_argument("--json", action="store_true", help="print the metrics as one JSON object keyed by task")
    d.add_argument("--retrain", action="store_true", help="ignore the cached demo model and train again")
    d.add_argument("--recipe", default=None, help="recipe to train (default: demo, or tiny with --quick)")
    d.add_argument("--n", type=int, default=None, help="corpus size (default from the recipe)")
    d.add_argument("--text-only", action="store_true", help="ablation: the same recipe and corpus with audio and video removed")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("overrides", nargs="*", help="recipe overrides key=value")
    d.set_defaults(func=demo_command)

    t = sub.add_parser("train", help="run a curriculum recipe (P2E phases 1a, 1b, 2, 3) with accelerate")
    t.add_argument("recipe", help="a built-in recipe name (tiny, demo, paper, joint) or a YAML file")
    t.add_argument("--out", default=None, help="output folder (checkpoints, metrics.jsonl, model/); default runs/RECIPE")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run exactly")
    t.add_argument("--data", default=None, help="folder holding the recipe's {data} (a SynthAffect corpus is generated there if missing)")
    t.add_argument("--feature-cache", default=None, help="feature cache folder (default: $NANOEMOX_CACHE/features)")
    t.add_argument("--tensorboard", action="store_true", help="also write a TensorBoard log")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("overrides", nargs="*", help="recipe overrides key=value, e.g. phases.3.steps=10")
    t.set_defaults(func=train_command)


def train_command(args) -> int:
    from .recipe import prepare_recipe
    from .trainer import CurriculumTrainer

    out = Path(args.out) if args.out else Path("runs") / Path(args.recipe).stem
    recipe = prepare_recipe(args.recipe, out, args.data, args.overrides, progress=not args.no_progress)
    trainer = CurriculumTrainer(recipe, out, resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard, feature_cache=args.feature_cache)
    final = trainer.run()
    if trainer.accelerator.is_main_process:
        print(f"model saved to {final}")
    return 0


def demo_command(args) -> int:
    from ..pipeline import run_demo

    return run_demo(quick=args.quick, as_json=args.json, retrain=args.retrain, recipe=args.recipe, n=args.n, progress=not args.no_progress, overrides=args.overrides, text_only=args.text_only)
