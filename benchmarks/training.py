"""Training throughput (samples/s, per step, median over steps) and peak RSS per curriculum
phase, from a short run of the tiny recipe (and of the same recipe on the small preset when
--preset small). Throughput is also given relative to phase 1a of the same run."""
from __future__ import annotations

import json
import statistics
import time

from .common import Context, Table, peak_rss_bytes, peak_rss_reset, spread

TITLE = "training: samples/s and peak RSS per phase"
STEPS = {"tiny": 6, "small": 4}  # per phase: enough steps for a median, short enough for the harness


def measure(ctx: Context, preset: str) -> list[dict]:
    from nanoemox.training.recipe import load_recipe
    from nanoemox.training.trainer import CurriculumTrainer

    corpus = ctx.corpus()
    steps = STEPS.get(preset, 4)
    overrides = {"preset": preset, **{f"phases.{p}.steps": steps for p in ("1a", "1b", "2", "3")}, "defaults.save_every": 1000}
    recipe = load_recipe("tiny", overrides, paths={"data": str(corpus["dir"])})
    recipe.datasets["synth"]["manifest"] = str(corpus["dir"] / "all.jsonl")
    out = ctx.workdir / f"train-{preset}"
    records: list[dict] = []

    class Measured(CurriculumTrainer):
        def _run_phase(self, index, phase, data, samples_by_id):
            peak_rss_reset()
            t0 = time.perf_counter()
            super()._run_phase(index, phase, data, samples_by_id)
            records.append({"phase": phase.name, "peak_rss": peak_rss_bytes(), "seconds": time.perf_counter() - t0,
                            "batch": phase.batch_size, "steps": phase.steps})

    peak_rss_reset()
    trainer = Measured(recipe, out, progress=False, feature_cache=ctx.workdir / f"train-cache-{preset}")
    trainer.run()
    sps: dict[str, list[float]] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "samples_per_s" in rec:
            sps.setdefault(rec["phase"], []).append(rec["samples_per_s"])
    for r in records:
        r["samples_per_s"] = sps.get(r["phase"], [])[1:] or sps.get(r["phase"], [])  # step 1 carries the phase set-up
    return records


def run(ctx: Context) -> list[Table]:
    presets = ["tiny"] + (["small"] if ctx.preset == "small" else [])
    t = Table(TITLE, ["preset", "phase", "samples/s per step, median [min..max]", "throughput vs phase 1a", "peak RSS (MiB)"])
    for preset in presets:
        records = measure(ctx, preset)
        base = statistics.median(records[0]["samples_per_s"])
        for r in records:
            med = statistics.median(r["samples_per_s"])
            t.rows.append([preset, r["phase"], spread(r["samples_per_s"], "{:.1f}"), f"{med / base:.2f}x", f"{r['peak_rss'] / 2**20:.0f}"])
    t.notes.append(f"recipe tiny (batch 4, {', '.join(f'{p}: {s} steps' for p, s in STEPS.items() if p in presets)} per phase) on "
                   f"{ctx.n_clips} SynthAffect clips, frozen encoders' features cached; samples/s from the trainer's per-step log "
                   "(first step of each phase dropped); peak RSS = the process's VmHWM, reset at each phase start (a count, not a time)")
    return [t]
