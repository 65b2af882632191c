"""`nanoemox demo`: SynthAffect -> P2E curriculum on the small preset -> six-task evaluation -> one
analysed clip. Everything expensive is cached under $NANOEMOX_CACHE and keyed by what produced it
(recipe text, overrides, corpus size, nanoemox version), so a second run only evaluates from cache
and analyses the example."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from .. import __version__
from ..storage import atomic_path, atomic_write_json, cache_dir

# The demo's gates (issue: what the trained small model must reach on the SynthAffect test split).
GATES = {
    "mer": ("accuracy", "emotion accuracy", 0.85),
    "msa": ("waf", "sentiment WAF", 0.85),
    "mir": ("accuracy", "intent accuracy", 0.85),
    "ovmer": ("wheel_free_f", "OV-MER set F (wheel-free)", 0.6),
    "eri": ("clue_recall", "reason clue recall", 0.6),
    "erg": ("emotion_accuracy", "reply emotion accuracy", 0.8),
}


def _key(recipe: str, n: int | None, overrides: list[str], text_only: bool) -> str:
    from .recipe import recipe_path

    h = hashlib.sha1(recipe_path(recipe).read_bytes())
    h.update(json.dumps([n, sorted(overrides), __version__] + (["text-only"] if text_only else [])).encode())
    return h.hexdigest()[:12]


def _strip_media(src: Path, dst: Path) -> None:
    """The text-only ablation: the same samples with every media path removed."""
    import dataclasses

    from ..data.schema import read_manifest, write_manifest

    for split in ("train", "val", "test"):
        samples = read_manifest(src / f"{split}.jsonl", resolve_media=False)
        write_manifest(dst / f"{split}.jsonl", [dataclasses.replace(s, video=None, audio=None, image=None) for s in samples])


def run_demo(quick: bool = False, as_json: bool = False, retrain: bool = False, recipe: str | None = None, n: int | None = None, progress: bool = True, overrides: list[str] | None = None, text_only: bool = False) -> int:
    from rich.console import Console

    overrides = list(overrides or [])
    recipe = recipe or ("tiny" if quick else "demo")
    console = Console(stderr=True)
    key = _key(recipe, n, overrides, text_only)
    root = cache_dir() / "demo" / f"{recipe}-{key}"
    default = recipe == "demo" and not overrides and n is None and not text_only
    model_dir = cache_dir() / "models" / ("demo-small" if default else f"demo-{recipe}{'-textonly' if text_only else ''}-{key}")
    marker = model_dir / "demo.json"
    t0 = time.time()
    cached = marker.is_file() and json.loads(marker.read_text()).get("key") == key and not retrain
    from .recipe import prepare_recipe

    data_dir = root / "data"
    if text_only:  # generate (or reuse) the corpus, then train and test on its text alone
        prepare_recipe(recipe, root, str(data_dir), overrides, progress=progress, n=n)
        data_dir = root / "data-text"
        _strip_media(root / "data", data_dir)
    rec = prepare_recipe(recipe, root, str(data_dir), overrides, progress=progress, n=n)
    test_manifest = data_dir / "test.jsonl"
    train_seconds = None
    if cached:
        console.print(f"[green]using the cached demo model[/green] {model_dir} (--retrain to train again)")
    else:
        from .trainer import CurriculumTrainer

        console.print(f"training recipe [bold]{recipe}[/bold] ({rec.preset} preset) -> {root}")
        trainer = CurriculumTrainer(rec, root, resume=True, progress=progress)
        final = trainer.run()
        train_seconds = round(time.time() - t0, 1)
        with atomic_path(model_dir) as tmp:
            shutil.copytree(final, tmp)
            (tmp / "demo.json").write_text(json.dumps({"key": key, "recipe": recipe, "run": str(root), "train_seconds": train_seconds}) + "\n")
    metrics = _evaluate(model_dir, test_manifest, root, key, progress)
    if as_json:
        print(json.dumps({t: v for t, v in metrics.items() if not t.startswith("_")}, default=float))
    else:
        _print_table(metrics, console, model_dir, train_seconds)
        _analyse_example(model_dir, test_manifest, console)
    console.print(f"demo finished in {time.time() - t0:.0f} s")
    return 0


def _evaluate(model_dir: Path, test_manifest: Path, root: Path, key: str, progress: bool) -> dict:
    """Predictions on the test split (cached per model key), scored by the evaluation suite."""
    from ..cli import main as cli_main
    from ..data.schema import read_manifest
    from ..evaluation.runner import evaluate_predictions, read_predictions

    preds = root / f"preds-test-{key}.jsonl"
    argv = ["predict", str(test_manifest), "--model", str(model_dir), "--out", str(preds), "--batch-size", "48"]
    if not progress:
        argv.append("--quiet")
    rc = cli_main(argv)
    if rc != 0:
        raise SystemExit(rc)
    metrics = evaluate_predictions(read_predictions(preds), read_manifest(test_manifest))
    atomic_write_json(model_dir / "metrics-test.json", metrics)
    return metrics


def _print_table(metrics: dict, console, model_dir: Path, train_seconds) -> None:
    from rich.table import Table

    table = Table(title="SynthAffect test split")
    for col in ("level", "task", "metric", "value", "gate", ""):
        table.add_column(col)
    levels = {"msa": "perception", "mer": "perception", "ovmer": "perception", "eri": "understanding", "mir": "understanding", "erg": "interaction"}
    for task in ("msa", "mer", "ovmer", "eri", "mir", "erg"):
        if task not in metrics:
            continue
        key, label, gate = GATES[task]
        v = float(metrics[task].get(key, 0.0))
        table.add_row(levels[task], task, label, f"{v:.3f}", f">= {gate}", "[green]met[/green]" if v >= gate else "[red]not met[/red]")
        if task == "erg":
            d2 = float(metrics[task].get("dist2", 0.0))
            table.add_row("", "", "reply Dist-2", f"{d2:.3f}", "> 0.5", "[green]met[/green]" if d2 > 0.5 else "[red]not met[/red]")
    console.print(table)
    if train_seconds is not None:
        console.print(f"training took {train_seconds:.0f} s; model cached at {model_dir}")


def _analyse_example(model_dir: Path, test_manifest: Path, console) -> None:
    from ..data.schema import read_manifest
    from ..inference.analyzer import Analyzer

    sample = read_manifest(test_manifest)[0]
    analyzer = Analyzer.from_pretrained(model_dir)
    result = analyzer.analyze(sample.media_path(), transcript=sample.transcript, history=sample.history, tasks="all")
    console.print(f"\n[bold]example clip[/bold] {sample.media_path() or '(text only)'}")
    console.print(f'transcript: "{sample.transcript}"   gold emotion: {sample.emotion}, intent: {sample.intent}')
    for task, r in result.results.items():
        console.print(f"  [cyan]{task:6}[/cyan] {r.raw}")
    if result.gate:
        console.print("  fusion gate: " + ", ".join(f"{g:.2f}" for g in result.gate))
    sys.stdout.flush()
