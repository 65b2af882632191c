"""Extraction (the MER-UniBench answer -> emotion-list step): answers per second with the `hf`
extractor on the small preset's language model (SmolLM2-135M-Instruct, batched greedy) and with
the `lexicon` proxy, each cold (empty cache) and warm (a second run over the same answers, served
by the on-disk cache). Cases alternate per repetition; the figures are the per-repetition ratios."""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Context, Table, ratios, spread

TITLE = "extraction: answers/s, hf (SmolLM2-135M) vs lexicon, cold vs cached"

_OPENERS = ("From the tense voice and the frown,", "Given the trembling words and lowered eyes,",
            "The bright tone and wide smile suggest that", "Judging by the clenched jaw,", "Across the clip,")
_WORDS = ("happy", "sad", "angry", "worried", "surprised", "frustrated", "calm", "excited", "lonely", "nervous",
          "disappointed", "relieved", "anxious", "joyful", "annoyed", "confused")


def answers(n: int, seed: int = 0) -> list[str]:
    """Free-text answers shaped like a model's [Recogn_OV] replies (distinct texts)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = ", ".join(rng.choice(_WORDS, size=int(rng.integers(1, 4)), replace=False))
        out.append(f"{_OPENERS[i % len(_OPENERS)]} the character's emotional state is {words} (clip {i}).")
    return out


def run(ctx: Context, n_hf: int = 8, n_lex: int = 400) -> list[Table]:
    from nanoemox.evaluation.extractors import HFExtractor, LexiconProxy
    from nanoemox.evaluation.wheel import load_wheels
    from nanoemox.modeling.pretrained.smollm2 import smollm2_dir

    from .evaluation import wheel_dir

    ws = load_wheels(wheel_dir())
    lm = smollm2_dir()
    hf_texts, lex_texts = answers(n_hf), answers(n_lex, seed=1)
    root = Path(tempfile.mkdtemp(prefix="extract-", dir=ctx.workdir))
    hf_model = HFExtractor(model_dir=str(lm))  # one loaded model shared by the hf cases
    hf_model._load()
    hf_model._complete(["warm-up"])  # first-call overheads stay out of the timings

    def hf(cache: Path | None):
        ext = HFExtractor(cache_dir=cache, model_dir=str(lm))
        ext._lm, ext._tok = hf_model._lm, hf_model._tok
        out = ext.emotions(hf_texts)
        assert all(x is not None for x in out)
        return ext.stats

    def lex(cache: Path | None):
        return LexiconProxy(cache_dir=cache, ws=ws).emotions(lex_texts)

    def paired(run, n_reps: int) -> dict[str, list[float]]:
        """Per repetition: a cold run into a fresh cache folder, then the same answers again
        (a new extractor object reading that folder from disk)."""
        out: dict[str, list[float]] = {"cold": [], "warm": []}
        for r in range(n_reps):
            d = root / f"{run.__name__}-{r}"
            for key in ("cold", "warm"):
                t0 = time.perf_counter()
                run(d)
                out[key].append(time.perf_counter() - t0)
            print(f"   {run.__name__} rep {r}: cold {out['cold'][-1]:.2f} s, cached {out['warm'][-1]:.3f} s", file=sys.stderr, flush=True)
        return out

    lex(None)  # warm-up: imports, vocabulary
    reps = max(3, min(ctx.repeats, 3))
    h, x = paired(hf, reps), paired(lex, reps)
    times = {"hf_cold": h["cold"], "hf_warm": h["warm"], "lex_cold": x["cold"], "lex_warm": x["warm"]}
    rate = {k: [(n_hf if k.startswith("hf") else n_lex) / s for s in v] for k, v in times.items()}
    t = Table(TITLE, ["case", "answers/s, median [min..max]", "ratio"])
    t.rows.append(["hf, SmolLM2-135M, batch 8, greedy, cold cache", spread(rate["hf_cold"], "{:.2f}"), "1.00x (baseline)"])
    t.rows.append(["hf, second run (cached)", spread(rate["hf_warm"], "{:.0f}"),
                   spread(ratios(times["hf_cold"], times["hf_warm"]), "{:.0f}", "x faster than cold")])
    t.rows.append(["lexicon proxy, cold cache", spread(rate["lex_cold"], "{:.0f}"),
                   spread(ratios(times["hf_cold"], [s * n_hf / n_lex for s in times["lex_cold"]]), "{:.0f}", "x faster than hf cold, per answer")])
    t.rows.append(["lexicon proxy, second run (cached)", spread(rate["lex_warm"], "{:.0f}"),
                   spread(ratios(times["lex_cold"], times["lex_warm"]), "{:.1f}", "x faster than cold")])
    t.notes.append(f"{n_hf} (hf, one batch) and {n_lex} (lexicon) distinct answers, emotion-list step; {reps} repetitions, each a "
                   f"cold run into a fresh cache folder (entries written) followed by the same answers again read back from that "
                   f"folder by a new extractor object (the second run of a table); the hf model is loaded once before timing. Wheels: {ws.source}. Median hf cold: {statistics.median(rate['hf_cold']):.2f} answers/s")
    shutil.rmtree(root, ignore_errors=True)
    return [t]
