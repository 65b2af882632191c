"""The paper's scoring rules (spec PAPER_EVAL.md), restated as pure functions.

- MER-UniBench: hit rate (MER datasets), the paper's WAF (MSA datasets; neutral and unparseable
  predictions are "not positive", gold 0 dropped), the wheel set F (OV-MERD). All fractions here;
  tables print x100.
- AvaMERG (Table 5): the authors' emotion parsing of a `<think>` answer, exact accuracy, hit rate
  after the 8-class MEAD projection, per-response Dist-1 / Dist-2 on the reply without its think
  block. A word outside the projection is a miss and is counted (the authors' code crashes).
- MIntRec: exact, case-sensitive intent match; accuracy, weighted F1, weighted precision.

The wheel mapping itself lives in `wheel.py`; this module only adds the rules around it.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import numpy as np

from .wheel import WheelSet, load_wheels, parse_label_list, wheel_hit_rate, wheel_set_metric

# ---------------------------------------------------------------------------------------------
# MER-UniBench
# ---------------------------------------------------------------------------------------------
SENTIMENT_VALUE = {"positive": 1, "negative": -1}  # anything else (neutral, unparseable) is 0


def unibench_hit_rate(gold: Sequence[str], pred_lists: Sequence, ws: WheelSet | None = None) -> dict:
    """Hit rate over the 5 wheels at level 1 (samples whose gold maps nowhere skipped per wheel)."""
    ws = ws or load_wheels()
    res = wheel_hit_rate(list(gold), [parse_label_list(p) for p in pred_lists], ws, "level1")
    return {"hit_rate": res["hit_rate"], "n": len(gold), "n_scored": res["n"],
            "per_wheel": {k: v["hit_rate"] for k, v in res["per_wheel"].items()}, "wheel_source": res["source"]}


def sentiment_value(label) -> int:
    """positive -> 1, negative -> -1, anything else -> 0, by exact string match."""
    return SENTIMENT_VALUE.get(label, 0) if isinstance(label, str) else 0


def paper_waf(gold_scores: Sequence[float], pred_labels: Sequence) -> dict:
    """The MSA score: drop gold == 0; y_true = gold > 0, y_pred = value(pred) > 0; sklearn weighted
    F1 and accuracy. A neutral prediction therefore counts as not-positive."""
    from sklearn.metrics import accuracy_score, f1_score

    g = np.asarray([float(x) for x in gold_scores], dtype=float)
    p = np.asarray([sentiment_value(x) for x in pred_labels], dtype=float)
    keep = g != 0
    n = int(keep.sum())
    out = {"n": len(g), "n_scored": n, "n_gold_zero": int((~keep).sum()),
           "n_unparsed": int(sum(1 for x in pred_labels if not (isinstance(x, str) and x in ("positive", "negative", "neutral"))))}
    if n == 0:
        return {"waf": 0.0, "accuracy": 0.0, **out}
    yt, yp = g[keep] > 0, p[keep] > 0
    return {"waf": float(f1_score(yt, yp, average="weighted", zero_division=0)), "accuracy": float(accuracy_score(yt, yp)), **out}


def ovmerd_f(gold: Sequence, pred: Sequence, ws: WheelSet | None = None) -> dict:
    """OV-MERD: the emotion-wheel set F at level 1, mean over the 5 wheels."""
    r = wheel_set_metric(list(gold), list(pred), ws or load_wheels(), "level1")
    return {"f": r["f"], "precision": r["precision"], "recall": r["recall"], "n": r["n_samples"], "n_scored": r["n"],
            "wheel_source": r["source"]}


# ---------------------------------------------------------------------------------------------
# AvaMERG
# ---------------------------------------------------------------------------------------------
MEAD_CLASSES = ("neutral", "happy", "surprised", "angry", "fear", "sad", "disgusted", "contempt")
# The authors' projection onto the 8 MEAD classes, written class by class in their order. Later
# groups override earlier ones, as in their dict literal: `embarrassed` is listed under sad and
# again under disgusted, and Python keeps the second value.
_MEAD_GROUPS = (
    ("", "neutral happy surprised angry fear sad disgusted contempt"),
    ("happy", "joyful prepared content contentment caring trusting faithful confident hopeful grateful proud excited "
     "anticipating motivated enjoyable satisfied optimistic thankful gratitude loving inspired inspiring indebted "
     "delighted playful encouraged appreciative admiring"),
    ("sad", "lonely guilty anxious nostalgic embarrassed disappointed sentimental ashamed devastated frustrated "
     "frustration betrayed sadness pensive weary fatigue exhaustion melancholy heavy-hearted melancholic tiredness "
     "tired exhausted heartbroken hurt homesick missing"),
    ("surprised", "impressed startled awe shocked"),
    ("angry", "furious annoyed"),
    ("fear", "afraid terrified apprehensive worried overwhelmed vulnerability helplessness anxiety uneasy fragile "
     "vulnerable fearful helpless nervous stressed burdened worry stress confusion confused concerned concern "
     "overwhelm suspicious doubt uncertain unclear suffering horrified"),
    ("disgusted", "embarrassed violated"),
    ("contempt", "jealous lost"),
    ("neutral", "reflective reflecting thoughtful thought inadequacy regret regretted regretful conflicted intimate "
     "resilient humble humbled introspective discouraged forgiving self patient productive feeling hesitant selfish "
     "profound aware calm light determined longing let loyal irresponsible"),
)
MEAD_PROJECTION: dict[str, str] = {}
for _cls, _words in _MEAD_GROUPS:
    for _w in _words.split():
        MEAD_PROJECTION[_w] = _cls or _w

# The fallback keyword dictionary: first class (in this order) any of whose keywords occurs as a
# substring of the lower-cased answer wins.
_KEYWORD_GROUPS = (
    ("angry", "angry anger furious mad irate enraged"),
    ("annoyed", "annoyed annoyance irritated irritation vexed bothered"),
    ("caring", "caring compassionate empathetic kind sympathetic concern"),
    ("content", "content contentment satisfied pleased peaceful fulfilled"),
    ("disappointed", "disappointed disappointment letdown discouraged disheartened"),
    ("excited", "excited excitement enthusiastic thrilled eager animated"),
    ("faithful", "faithful loyal devoted dedicated steadfast fidelity"),
    ("frustrated", "frustrated frustration exasperated aggravated irked"),
    ("grateful", "grateful gratitude thankful appreciative obliged"),
    ("guilty", "guilty guilt remorseful ashamed contrite regretful"),
    ("hopeful", "hopeful hope optimistic encouraged buoyant expectant anticipating"),
    ("joyful", "joyful joy happy delighted cheerful gleeful"),
    ("lonely", "lonely loneliness lonesome isolated forlorn desolate"),
    ("loneliness", "lonely loneliness lonesome isolated forlorn desolate"),
    ("nostalgic", "nostalgic nostalgia sentimental wistful yearning"),
    ("overwhelmed", "overwhelmed overwhelm swamped burdened overloaded"),
    ("sad", "sad sadness sorrowful melancholy grief depressed"),
    ("sadness", "sad sadness sorrowful melancholy grief depressed"),
    ("surprised", "surprised surprise amazed astonished shocked stunned"),
    ("terrified", "terrified terror frightened afraid scared petrified"),
    ("trusting", "trusting trust confident relying believing assured prepared"),
    ("worried", "worried worry anxious nervous concerned uneasy apprehensive"),
    ("anxious", "anxious anxiety worried nervous concerned uneasy"),
)
AVAMERG_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = tuple((c, tuple(w.split())) for c, w in _KEYWORD_GROUPS)
UNKNOWN = "unknown"
_SPEAKER_RE = re.compile(r"the emotion of the speaker is\s+(\w+)")
_THINK_BLOCK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


def avamerg_emotion(response) -> str:
    """The predicted speaker emotion of one answer, parsed the authors' way: the word after "the
    emotion of the speaker is" inside a complete <think>...</think> block; else the first class of
    the keyword dictionary with a keyword inside the lower-cased answer; else "unknown"."""
    text = response if isinstance(response, str) else ""
    start, end = text.find("<think>"), text.find("</think>")
    if start != -1 and end != -1:
        m = _SPEAKER_RE.search(text[start + len("<think>"):end].lower())
        if m:
            return m.group(1).strip()
    low = text.lower()
    for cls, keywords in AVAMERG_KEYWORDS:
        if any(k in low for k in keywords):
            return cls
    return UNKNOWN


def strip_think(response) -> str:
    """The reply without its <think>...</think> block(s), stripped."""
    return _THINK_BLOCK_RE.sub("", response if isinstance(response, str) else "").strip()


def distinct_per_response(responses: Sequence[str], n: int) -> float:
    """Mean over responses of distinct n-grams / n-grams (lower-cased, whitespace tokens);
    responses with no n-gram are skipped; 0 when none is left."""
    vals = []
    for r in responses:
        toks = r.strip().lower().split()
        grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
        if grams:
            vals.append(len(set(grams)) / len(grams))
    return float(np.mean(vals)) if vals else 0.0


def last_turns(samples: Sequence) -> list:
    """The last turn of each dialogue: samples grouped by meta.conversation_id (else the id
    without its `_tN` suffix), the highest N kept (else the last in manifest order)."""
    last: dict[str, tuple[int, object]] = {}
    for order, s in enumerate(samples):
        conv = str((s.meta or {}).get("conversation_id") or re.sub(r"_t\d+$", "", s.id))
        m = re.search(r"_t(\d+)$", s.id)
        rank = int(m.group(1)) if m else order
        if conv not in last or rank >= last[conv][0]:
            last[conv] = (rank, s)
    return [s for _, s in last.values()]


def avamerg_scores(gold: Sequence[str], responses: Sequence) -> dict:
    """Table 5 numbers on the paper's x100 scale from last-turn gold emotions and whole answers."""
    pred = [avamerg_emotion(r) for r in responses]
    g = [str(x).strip().lower() for x in gold]
    n = len(g)
    pg = [MEAD_PROJECTION.get(x) for x in g]
    pp = [MEAD_PROJECTION.get(x) for x in pred]
    acc = sum(a == b for a, b in zip(g, pred)) / n if n else 0.0
    hit = sum(a is not None and a == b for a, b in zip(pg, pp)) / n if n else 0.0
    replies = [c for c in (strip_think(r) for r in responses) if c]
    return {
        "accuracy": 100 * acc, "hit_rate": 100 * hit,
        "dist1": 100 * distinct_per_response(replies, 1), "dist2": 100 * distinct_per_response(replies, 2),
        "n": n, "n_unmapped": sum(x is None for x in pp), "n_unmapped_gold": sum(x is None for x in pg),
        "n_unknown": pred.count(UNKNOWN), "predicted": pred,
    }


# ---------------------------------------------------------------------------------------------
# MIntRec / MIntRec2.0
# ---------------------------------------------------------------------------------------------
def mintrec_scores(gold: Sequence[str], pred: Sequence) -> dict:
    """Exact, case-sensitive match: accuracy, weighted F1, weighted precision (zero_division 0),
    fractions. A missing prediction is the empty string (always wrong)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score

    g = ["" if x is None else str(x) for x in gold]
    p = ["" if (x is None or (isinstance(x, float) and math.isnan(x))) else str(x) for x in pred]
    if not g:
        return {"accuracy": 0.0, "weighted_f1": 0.0, "weighted_precision": 0.0, "n": 0}
    return {"accuracy": float(accuracy_score(g, p)),
            "weighted_f1": float(f1_score(g, p, average="weighted", zero_division=0)),
            "weighted_precision": float(precision_score(g, p, average="weighted", zero_division=0)), "n": len(g)}


# ---------------------------------------------------------------------------------------------
# the paper's figures
# ---------------------------------------------------------------------------------------------
UNIBENCH_COLUMNS = ("MER2023", "MER2024", "MELD", "IEMOCAP", "MOSI", "MOSEI", "SIMS", "SIMSv2", "OV-MERD")
PAPER_TABLE2: tuple[tuple[str, tuple[float, ...], float], ...] = (
    ("Nano-EmoX (P2E)", (79.09, 77.94, 56.55, 60.12, 76.82, 79.81, 86.25, 84.76, 64.75), 74.01),
    ("Nano-EmoX (joint)", (74.26, 78.61, 54.27, 61.54, 80.71, 79.52, 84.64, 83.31, 62.68), 73.28),
    ("AffectGPT 8.3B", (78.54, 78.80, 55.65, 60.54, 81.30, 80.90, 88.49, 86.18, 62.52), 74.77),
    ("AffectGPT (s) 2.1B, P2E data", (72.43, 77.83, 50.19, 57.64, 80.40, 79.97, 83.28, 83.23, 63.75), 72.08),
    ("R1-Omni", (58.30, 69.41, 40.87, 50.18, 55.56, 48.62, 74.71, 76.67, 51.84), 58.46),
)
PAPER_TABLE5: tuple[tuple[str, Mapping[str, float]], ...] = (
    ("Nano-EmoX (P2E)", {"accuracy": 54.82, "hit_rate": 91.13, "dist1": 95.47, "dist2": 99.83}),
    ("Nano-EmoX (joint)", {"accuracy": 34.91, "hit_rate": 74.79, "dist1": 95.41, "dist2": 99.73}),
    ("AffectGPT (s)", {"accuracy": 47.36, "hit_rate": 90.88, "dist1": 95.44, "dist2": 99.81}),
)
