"""`nanoemox demo`: SynthAffect -> P2E curriculum on the small preset -> six-task evaluation -> one
analysed clip and two real photographs. The trainer, the batch predictor and the evaluator are
called as library functions. Everything expensive is cached under $NANOEMOX_CACHE, keyed by what
produced it (recipe text, overrides, corpus size, nanoemox version), so a second run scores the
cached predictions and analyses the examples.

Determinism: a first run computes its encoder features into a feature cache of its own (not the
shared one), in one fixed batch order, so what other runs left in $NANOEMOX_CACHE cannot change a
number; `--json` carries the commit, the recipe key and the corpus hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .storage import atomic_path, atomic_write_json, cache_dir

# The demo's gates (issue 15: the issue-6 gates plus a 0.03 margin, so noise cannot flip them).
GATES = {
    "msa": ("waf", "sentiment WAF", 0.88),
    "mer": ("accuracy", "emotion accuracy", 0.88),
    "ovmer": ("wheel_free_f", "OV-MER set F (wheel-free)", 0.63),
    "eri": ("clue_recall", "reason clue recall", 0.63),
    "mir": ("accuracy", "intent accuracy", 0.88),
    "erg": ("emotion_accuracy", "reply emotion accuracy", 0.83),
}
DIST2_GATE = 0.5
LEVELS = {"msa": "perception", "mer": "perception", "ovmer": "perception", "eri": "understanding", "mir": "understanding", "erg": "interaction"}
PREDICT_BATCH = 52  # the 152 test clips in three generate calls per task


def demo_key(recipe: str, n: int | None, overrides: list[str], text_only: bool) -> str:
    from .training.recipe import recipe_path

    h = hashlib.sha1(recipe_path(recipe).read_bytes())
    h.update(json.dumps([n, sorted(overrides), __version__] + (["text-only"] if text_only else [])).encode())
    return h.hexdigest()[:12]


def source_commit() -> str:
    """The git commit of the checkout this package runs from ("+dirty" when its sources differ
    from it), or "unknown" outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)], cwd=here, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def corpus_hash(data_dir: Path) -> str:
    """SHA-1 over the split manifests (byte-identical for the same seed and code)."""
    h = hashlib.sha1()
    for split in ("train", "val", "test"):
        p = data_dir / f"{split}.jsonl"
        if p.is_file():
            h.update(split.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def wheel_dir() -> Path | None:
    """MER-UniBench wheel files: $NANOEMOX_WHEEL_DIR, else $NANOEMOX_REFDATA/emotion_wheel."""
    for d in (os.environ.get("NANOEMOX_WHEEL_DIR"), os.environ.get("NANOEMOX_REFDATA") and Path(os.environ["NANOEMOX_REFDATA"]) / "emotion_wheel"):
        if d and Path(d).is_dir():
            return Path(d)
    return None


def _strip_media(src: Path, dst: Path) -> None:
    """The text-only ablation: the same samples with every media path removed."""
    import dataclasses

    from .data.schema import read_manifest, write_manifest

    for split in ("train", "val", "test"):
        samples = read_manifest(src / f"{split}.jsonl", resolve_media=False)
        write_manifest(dst / f"{split}.jsonl", [dataclasses.replace(s, video=None, audio=None, image=None) for s in samples])


def run_demo(quick: bool = False, as_json: bool = False, retrain: bool = False, recipe: str | None = None, n: int | None = None,
             progress: bool = True, overrides: list[str] | None = None, text_only: bool = False) -> int:
    from rich.console import Console

    from .training.recipe import prepare_recipe

    overrides = list(overrides or [])
    recipe = recipe or ("tiny" if quick else "demo")
    console = Console(stderr=True)
    key = demo_key(recipe, n, overrides, text_only)
    root = cache_dir() / "demo" / f"{recipe}-{key}"
    default = recipe == "demo" and not overrides and n is None and not text_only
    model_dir = cache_dir() / "models" / ("demo-small" if default else f"demo-{recipe}{'-textonly' if text_only else ''}-{key}")
    marker = model_dir / "demo.json"
    t0 = time.time()
    cached = marker.is_file() and json.loads(marker.read_text()).get("key") == key and not retrain
    data_dir = root / "data"
    if text_only:  # generate (or reuse) the corpus, then train and test on its text alone
        prepare_recipe(recipe, root, str(data_dir), overrides, progress=progress, n=n)
        data_dir = root / "data-text"
        _strip_media(root / "data", data_dir)
    rec = prepare_recipe(recipe, root, str(data_dir), overrides, progress=progress, n=n)
    test_manifest = data_dir / "test.jsonl"
    prov = {"commit": source_commit(), "recipe": recipe, "recipe_key": key, "corpus_hash": corpus_hash(data_dir), "version": __version__}
    train_seconds = None
    if cached:
        console.print(f"[green]using the cached demo model[/green] {model_dir} (--retrain to train again)")
        prov["trained_at_commit"] = json.loads(marker.read_text()).get("commit", "unknown")
    else:
        train_seconds = _train(rec, root, model_dir, key, prov, progress, console, t0)
        prov["trained_at_commit"] = prov["commit"]
    metrics = _evaluate(model_dir, test_manifest, root, key, progress)
    gates = _gate_weights(model_dir, test_manifest, root, key)
    if as_json:
        out = {t: v for t, v in metrics.items() if not t.startswith("_")}
        out["_provenance"] = prov
        out["_fusion_gate_mean"] = gates
        print(json.dumps(out, default=float))
    else:
        _print_table(metrics, console, model_dir, train_seconds)
        _print_provenance(prov, gates, metrics, console)
        _analyse_example(model_dir, test_manifest, console)
        _real_photos(model_dir, console)
    console.print(f"demo finished in {time.time() - t0:.0f} s")
    return 0


def _train(rec, root: Path, model_dir: Path, key: str, prov: dict, progress: bool, console, t0: float) -> float:
    from .training.trainer import CurriculumTrainer

    console.print(f"training recipe [bold]{rec.name}[/bold] ({rec.preset} preset) -> {root}")
    # a feature cache of this run's own: features computed in one fixed batch order, whatever
    # the shared cache holds from other corpora or runs
    trainer = CurriculumTrainer(rec, root, resume=True, progress=progress, feature_cache=root / "features")
    final = trainer.run()
    train_seconds = round(time.time() - t0, 1)
    with atomic_path(model_dir) as tmp:
        shutil.copytree(final, tmp)
        (tmp / "demo.json").write_text(json.dumps({"key": key, "recipe": rec.name, "run": str(root), "train_seconds": train_seconds, **prov}) + "\n")
    return train_seconds


def _evaluate(model_dir: Path, test_manifest: Path, root: Path, key: str, progress: bool) -> dict:
    """Predictions on the test split (cached per model key), scored by the evaluation suite."""
    from .data.schema import read_manifest
    from .evaluation.runner import evaluate_predictions, read_predictions
    from .inference.analyzer import Analyzer
    from .inference.predict import predict_manifest

    preds = root / f"preds-test-{key}.jsonl"
    t = time.time()
    stats = predict_manifest(lambda: _merged(Analyzer.from_pretrained(model_dir)), test_manifest, preds, batch_size=PREDICT_BATCH, quiet=not progress)
    if stats.bad:
        print(f"warning: {stats.bad} test item(s) could not be answered: {stats.bad_items[:3]}", file=sys.stderr)
    if getattr(stats, "written", 0):
        print(f"predictions: {stats.written} answers in {time.time() - t:.0f} s", file=sys.stderr)
    metrics = evaluate_predictions(read_predictions(preds), read_manifest(test_manifest), wheel_dir=wheel_dir())
    atomic_write_json(model_dir / "metrics-test.json", metrics)
    return metrics


def _merged(analyzer):
    """LoRA folded into the base weights: the same greedy answers (BENCHMARKS.md, int8 section:
    72 of 72 identical) at about 2.7x the decoding speed of the unmerged peft layers."""
    from .inference.quantization import merge_lora

    merge_lora(analyzer.model.language_model)
    return analyzer


def _gate_weights(model_dir: Path, test_manifest: Path, root: Path, key: str) -> list[float] | None:
    """Mean fusion-gate weights over the test clips that have both audio and video (cached)."""
    path = root / f"gates-test-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())["mean"]
    import torch

    from .data.schema import read_manifest
    from .inference.analyzer import Analyzer
    from .modeling.processing import stack_tensors

    samples = [s for s in read_manifest(test_manifest) if s.media_path()]
    if not samples:
        return None
    an = Analyzer.from_pretrained(model_dir)
    rows: list[list[float]] = []
    for i in range(0, len(samples), 16):
        medias = [an.load_media(s.media_path()) for s in samples[i : i + 16]]
        per = [an.processor.media_tensors(m, an.processor.present_modalities(m)) for m in medias]
        batch = {k: v.to(an.device) for k, v in stack_tensors(per).items()}
        with torch.no_grad():
            _, gate = an.model.project(an.model.encode(**batch))
        if gate is not None:
            rows += [g for g in gate.float().cpu().tolist() if not any(x != x for x in g)]  # NaN: no fusion
    mean = [round(sum(c) / len(rows), 4) for c in zip(*rows)] if rows else None
    atomic_write_json(path, {"mean": mean, "n": len(rows), "max_weight_share": _max_share(rows)})
    return mean


def _max_share(rows: list[list[float]]) -> float | None:
    """Mean over clips of the largest gate weight (1.0: every clip uses one expert only)."""
    return round(sum(max(r) for r in rows) / len(rows), 4) if rows else None


def _print_table(metrics: dict, console, model_dir: Path, train_seconds) -> None:
    from rich.table import Table

    table = Table(title="SynthAffect test split")
    for col in ("level", "task", "metric", "value", "gate", ""):
        table.add_column(col)
    for task in GATES:
        if task not in metrics:
            continue
        key, label, gate = GATES[task]
        v = float(metrics[task].get(key, 0.0))
        table.add_row(LEVELS[task], task, label, f"{v:.3f}", f">= {gate}", _verdict(v >= gate))
        if task == "erg":
            d2 = float(metrics[task].get("dist2", 0.0))
            table.add_row("", "", "reply Dist-2", f"{d2:.3f}", f"> {DIST2_GATE}", _verdict(d2 > DIST2_GATE))
    console.print(table)
    n = metrics.get("mer", {}).get("n")
    if n:
        console.print(f"{n} test clips; one clip moves an accuracy by {1 / n:.3f}")
    if train_seconds is not None:
        console.print(f"training took {train_seconds:.0f} s; model cached at {model_dir}")


def _verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]not met[/red]"


def _print_provenance(prov: dict, gates, metrics: dict, console) -> None:
    ov = metrics.get("ovmer", {})
    if "wheel_f" in ov:
        console.print(f"OV-MER wheel set F (level 1): {float(ov['wheel_f']):.3f} (wheels: {ov.get('wheel_source', '?')})", markup=False)
    if gates:
        console.print("mean fusion-gate weights over the test split: " + ", ".join(f"{g:.3f}" for g in gates))
    console.print("provenance: " + ", ".join(f"{k} {v}" for k, v in prov.items()), markup=False)


def _analyse_example(model_dir: Path, test_manifest: Path, console) -> None:
    from .data.schema import read_manifest
    from .inference.analyzer import Analyzer

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


def real_photos() -> list[Path]:
    """Real face photographs that ship with installed packages: skimage's astronaut (smiling)
    and matplotlib's Grace Hopper (calm)."""
    out = []
    try:
        import skimage

        out.append(Path(skimage.__file__).parent / "data" / "astronaut.png")
    except ImportError:
        pass
    try:
        import matplotlib

        out.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    return [p for p in out if p.is_file()]


def photo_answers(analyzer, path: Path) -> dict[str, Any]:
    """The model's emotion and OV answers for a photo alone (no audio, no words), beside the
    expression CNN's own top class and confidence on the detected faces."""
    from .modeling.pretrained.fer import FER_LABELS, load_fer, preprocess_faces

    media = analyzer.load_media(path)
    res = analyzer.analyze(media, tasks="mer,ovmer")
    cnn = None
    if media.faces is not None and media.face_mask is not None and media.face_mask.any():
        import torch

        with torch.no_grad():
            probs = load_fer()(preprocess_faces(media.faces[media.face_mask])).probs.mean(0)
        cnn = {"label": FER_LABELS[int(probs.argmax())], "confidence": round(float(probs.max()), 3)}
    return {"photo": path.name, "model_emotion": res.results["mer"].label or res.results["mer"].raw,
            "model_ov": res.results["ovmer"].labels or res.results["ovmer"].raw, "cnn": cnn, "modalities": res.modalities}


def _real_photos(model_dir: Path, console) -> None:
    from .inference.analyzer import Analyzer

    photos = real_photos()
    if not photos:
        return
    analyzer = Analyzer.from_pretrained(model_dir)
    console.print("\n[bold]real photographs[/bold] (image only: no audio, no transcript)")
    for p in photos:
        a = photo_answers(analyzer, p)
        cnn = f"{a['cnn']['label']} ({a['cnn']['confidence']:.2f})" if a["cnn"] else "no face found"
        console.print(f"  {a['photo']}: model says {a['model_emotion']} / {a['model_ov']}; expression CNN says {cnn}")
