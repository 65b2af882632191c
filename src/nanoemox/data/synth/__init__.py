"""SynthAffect: a generated multimodal affect corpus (mp4 with h264 video + AAC speech, and JSONL
manifests in the project schema) with targets for all six tasks.

`generate_corpus(out_dir, n, seed)` writes `media/*.mp4`, `train.jsonl`, `val.jsonl`,
`test.jsonl`, `all.jsonl` and `CARD.md`. The same seed gives byte-identical manifests.
"""
from __future__ import annotations

import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import ConfigError
from ...storage import atomic_write_json, atomic_write_text
from ..schema import AffectSample, write_manifest
from .latent import EMOTIONS, INTENTS, balanced_labels

SPLITS = ("train", "val", "test")
__all__ = ["generate_corpus", "split_ids", "EMOTIONS", "INTENTS"]


def split_ids(ids: Sequence[str], emotions: Sequence[str], ratios: Sequence[float], seed: int) -> dict[str, str]:
    """Deterministic split stratified by emotion: each emotion's samples are shuffled (seeded) and
    cut by the ratios, with val/test getting at least one sample when an emotion has three or more."""
    rng = np.random.default_rng([seed, 7919])
    out: dict[str, str] = {}
    for emo in EMOTIONS:
        members = [i for i, e in zip(ids, emotions) if e == emo]
        members = [members[j] for j in rng.permutation(len(members))]
        m = len(members)
        n_val = int(round(ratios[1] * m))
        n_test = int(round(ratios[2] * m))
        if m >= 3:
            n_val = max(n_val, 1) if ratios[1] > 0 else 0
            n_test = max(n_test, 1) if ratios[2] > 0 else 0
        n_train = max(0, m - n_val - n_test)
        for k, sid in enumerate(members):
            out[sid] = "train" if k < n_train else "val" if k < n_train + n_val else "test"
    return out


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or any(x < 0 for x in r) or not math.isclose(sum(r), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split ratios must be three non-negative numbers summing to 1 (got {','.join(map(str, ratios))})")
    return r  # type: ignore[return-value]


def _worker_init() -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)  # one process per core; no nested threading
    threadpool_limits(limits=1)


def _run(job):
    from .render import generate_sample

    return job.index, generate_sample(job)


def generate_corpus(
    out_dir: str | os.PathLike,
    n: int,
    seed: int,
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
    workers: int = 2,
    progress: bool = True,
    size: int = 160,
    fps: int = 10,
) -> dict[str, Any]:
    """Generate the corpus; returns paths, counts, the face detection rate and probe accuracies."""
    from .card import render_card, run_probes
    from .render import Job
    from .voice import espeak_binary

    if n < 1:
        raise ConfigError(f"--n must be at least 1 (got {n})")
    if size < 64 or fps < 1:
        raise ConfigError("clip size must be at least 64 px and fps at least 1")
    ratios = _check_ratios(split_ratios)
    espeak_binary()  # fail early and clearly when espeak-ng is missing
    out = Path(out_dir)
    (out / "media").mkdir(parents=True, exist_ok=True)

    # balanced emotions and intents, each in its own seeded order, independent of each other
    emotions = balanced_labels(EMOTIONS, n, np.random.default_rng([seed, 1]))
    intents = balanced_labels(INTENTS, n, np.random.default_rng([seed, 2]))
    jobs = [Job(seed, i, emotions[i], intents[i], str(out), size, fps) for i in range(n)]

    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    bar = _progress(n, progress)
    try:
        if workers <= 1:
            _worker_init()
            for job in jobs:
                i, res = _run(job)
                results[i] = res
                bar.update(1)
        else:
            import multiprocessing as mp

            # spawn, not fork: a forked child inherits the parent's OpenCV / BLAS thread pools in
            # whatever state they were in and can deadlock (seen under pytest)
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
                futures = [pool.submit(_run, job) for job in jobs]
                for fut in as_completed(futures):
                    i, res = fut.result()
                    results[i] = res
                    bar.update(1)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    ordered = [results[i] for i in range(n)]
    records = [r["record"] for r in ordered]
    splits = split_ids([r["id"] for r in records], [r["emotion"] for r in records], ratios, seed)
    samples = [AffectSample.from_dict(r) for r in records]
    paths: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name in SPLITS:
        part = [s for s in samples if splits[s.id] == name]
        paths[name] = str(out / f"{name}.jsonl")
        counts[name] = write_manifest(paths[name], part)
    paths["all"] = str(out / "all.jsonl")
    counts["all"] = write_manifest(paths["all"], samples)

    checked = sum(r["stats"]["frames_checked"] for r in ordered)
    found = sum(r["stats"]["faces_found"] for r in ordered)
    probes = run_probes(records, [r["features"] for r in ordered], [r["stats"]["lexicon"] for r in ordered], splits, seed)
    from .card import task_probes

    task_scores = task_probes(records, probes["accuracy"])
    media_bytes = sum((out / r["video"]).stat().st_size for r in records)
    summary = {
        "out_dir": str(out),
        "seed": seed,
        "n": n,
        "size": size,
        "fps": fps,
        "split_ratios": list(ratios),
        "counts": counts,
        "paths": paths,
        "face_detection_rate": found / max(checked, 1),
        "media_mb": media_bytes / 2**20,
        "probes": probes,
        "task_probes": task_scores,
        "seconds": elapsed,
        "seconds_per_clip": elapsed / n,
        "workers": workers,
    }
    card = out / "CARD.md"
    atomic_write_text(card, render_card(summary, records, splits))
    paths["card"] = str(card)
    stats = {k: v for k, v in summary.items() if k not in ("seconds", "seconds_per_clip", "out_dir", "paths", "workers")}
    atomic_write_json(out / "stats.json", stats)
    paths["stats"] = str(out / "stats.json")
    return summary


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="synth", unit="clip", file=sys.stderr, dynamic_ncols=True)
