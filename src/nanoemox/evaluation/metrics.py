"""Pure metric functions for the six tasks. None of them raises on empty, unknown or mis-cased
input: an empty input gives zeros with `n == 0`, an unknown label is simply wrong."""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Iterable, Mapping, Sequence

import numpy as np

from .wheel import WheelSet, load_wheels, parse_label_list, wheel_hit_rate

_WS_RE = re.compile(r"\s+")
_PUNCT_RE = re.compile(r"[^\w\s'-]+")
_TOKEN_RE = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def norm_label(x) -> str:
    """Lower-case, trim, collapse spaces/underscores, drop trailing punctuation: "  Ask_for Help. "
    -> "ask for help". None -> ""."""
    if x is None:
        return ""
    if isinstance(x, float) and x != x:
        return ""
    s = unicodedata.normalize("NFKC", str(x)).lower().replace("_", " ")
    return _WS_RE.sub(" ", s).strip().strip(".!?;:,\"'").strip()


def norm_text(x) -> str:
    """Text for phrase matching: lower-case, punctuation removed, single spaces."""
    if not x:
        return ""
    s = unicodedata.normalize("NFKC", str(x)).lower()
    s = _PUNCT_RE.sub(" ", s).replace("-", " ")
    return _WS_RE.sub(" ", s).strip()


# ---------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------
def classification_metrics(gold: Sequence, pred: Sequence, labels: Sequence[str] | None = None) -> dict:
    """Accuracy, weighted F1 (WAF), weighted precision and macro F1 over normalised labels.

    Weights are the gold supports, so a predicted label outside `labels` (or a missing one) only
    costs recall. `labels` defaults to the gold label set.
    """
    from sklearn.metrics import f1_score, precision_score

    g = [norm_label(x) for x in gold]
    p = [norm_label(x) for x in pred]
    n = len(g)
    if n == 0:
        return {"accuracy": 0.0, "waf": 0.0, "weighted_precision": 0.0, "macro_f1": 0.0, "n": 0}
    labs = sorted({norm_label(x) for x in labels} if labels else set(g))
    labs = [x for x in labs if x]
    acc = float(np.mean([a == b for a, b in zip(g, p)]))
    if not labs:
        return {"accuracy": acc, "waf": 0.0, "weighted_precision": 0.0, "macro_f1": 0.0, "n": n}
    kw = dict(labels=labs, zero_division=0)
    return {
        "accuracy": acc,
        "waf": float(f1_score(g, p, average="weighted", **kw)),
        "weighted_precision": float(precision_score(g, p, average="weighted", **kw)),
        "macro_f1": float(f1_score(g, p, average="macro", **kw)),
        "n": n,
    }


def confusion(gold: Sequence, pred: Sequence, labels: Sequence[str] | None = None) -> dict:
    """{"labels": [...], "matrix": [[count gold i predicted j]]}; predictions outside the labels
    fall in an extra "other" column."""
    g = [norm_label(x) for x in gold]
    p = [norm_label(x) for x in pred]
    labs = sorted({norm_label(x) for x in labels} if labels else set(g))
    labs = [x for x in labs if x]
    idx = {l: i for i, l in enumerate(labs)}
    m = np.zeros((len(labs), len(labs) + 1), dtype=int)
    for a, b in zip(g, p):
        if a in idx:
            m[idx[a], idx.get(b, len(labs))] += 1
    return {"labels": labs, "columns": labs + ["other"], "matrix": m.tolist()}


# ---------------------------------------------------------------------------------------------
# MSA
# ---------------------------------------------------------------------------------------------
_POS = {"positive", "pos", "weakly positive", "strongly positive"}
_NEG = {"negative", "neg", "weakly negative", "strongly negative"}


def _polarity(label=None, score=None) -> str | None:
    """positive / negative / neutral from a label (preferred) or a score; None when unknown."""
    lab = norm_label(label)
    if lab in _POS:
        return "positive"
    if lab in _NEG:
        return "negative"
    if lab == "neutral":
        return "neutral"
    if score is not None and isinstance(score, (int, float)) and not math.isnan(score):
        return "positive" if score > 0 else "negative" if score < 0 else "neutral"
    return None


def msa_metrics(gold_labels: Sequence, pred_labels: Sequence, gold_scores: Sequence | None = None,
                pred_scores: Sequence | None = None) -> dict:
    """MSA: WAF and accuracy on positive vs negative with gold-neutral samples dropped (gold
    polarity from the score when one is given, as MER-UniBench does with score 0 -> neutral). A
    neutral, unknown or missing prediction counts as wrong. MAE and Pearson correlation over the
    samples where both scores exist (all samples, neutral included)."""
    n = len(gold_labels)
    gs = list(gold_scores) if gold_scores is not None else [None] * n
    ps = list(pred_scores) if pred_scores is not None else [None] * n
    g_pol = [_polarity(None, s) if _num(s) else _polarity(l) for l, s in zip(gold_labels, gs)]
    p_pol = [_polarity(l, s) or "" for l, s in zip(pred_labels, ps)]
    keep = [i for i, gp in enumerate(g_pol) if gp in ("positive", "negative")]
    cls = classification_metrics([g_pol[i] for i in keep], [p_pol[i] for i in keep], labels=["positive", "negative"])
    out = {"waf": cls["waf"], "accuracy": cls["accuracy"], "n": len(keep), "n_neutral_dropped": sum(gp == "neutral" for gp in g_pol),
           "n_unknown_gold": sum(gp is None for gp in g_pol)}
    pairs = [(float(a), float(b)) for a, b in zip(gs, ps) if _num(a) and _num(b)]
    if pairs:
        a, b = np.asarray(pairs).T
        out["mae"] = float(np.mean(np.abs(a - b)))
        out["corr"] = float(np.corrcoef(a, b)[0, 1]) if len(pairs) > 1 and a.std() > 0 and b.std() > 0 else 0.0
        out["n_scored"] = len(pairs)
    return out


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


# ---------------------------------------------------------------------------------------------
# MER
# ---------------------------------------------------------------------------------------------
def mer_metrics(gold: Sequence, pred: Sequence, candidates: Sequence[str] | None = None,
                pred_lists: Sequence | None = None, ws: WheelSet | None = None) -> dict:
    """MER: wheel hit rate (gold label vs the predicted label list, both mapped through the
    wheels; MER-UniBench's metric) plus closed-set accuracy / WAF when there is one predicted
    label. `pred_lists` defaults to the single predicted labels."""
    lists = pred_lists if pred_lists is not None else [[p] if p else [] for p in pred]
    hit = wheel_hit_rate(list(gold), list(lists), ws or load_wheels())
    cls = classification_metrics(gold, pred, labels=candidates)
    return {"hit_rate": hit["hit_rate"], "hit_rate_n": hit["n"], "hit_rate_source": hit["source"], **cls}


# ---------------------------------------------------------------------------------------------
# MIR
# ---------------------------------------------------------------------------------------------
_SPELLING = ((r"ise\b", "ize"), (r"isation\b", "ization"), (r"yse\b", "yze"), (r"our\b", "or"), (r"ogue\b", "og"))


def tolerant_label(x) -> str:
    """Case/spacing/punctuation-insensitive key that also merges British and American spellings:
    "Apologise" and "apologize." share one key."""
    s = norm_text(x).replace(" ", "")
    for pat, rep in _SPELLING:
        s = re.sub(pat, rep, s)
    return s


def snap_to_candidates(pred, candidates: Sequence[str]) -> str:
    """The candidate whose tolerant key equals the prediction's, else the closest by edit ratio
    (>= 0.85), else the prediction unchanged."""
    import difflib

    key = tolerant_label(pred)
    if not key:
        return ""
    keys = {tolerant_label(c): c for c in candidates}
    if key in keys:
        return keys[key]
    best = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.85)
    return keys[best[0]] if best else str(pred)


def mir_metrics(gold: Sequence, pred: Sequence, candidates: Sequence[str] | None = None) -> dict:
    """MIR: accuracy, weighted F1 and weighted precision with exact (normalised-case) matching,
    and the same after tolerant matching (spelling variants, near-misses snapped to the
    candidate set), reported separately."""
    cands = list(candidates) if candidates else sorted({str(g) for g in gold if g})
    exact = classification_metrics(gold, pred, labels=cands)
    tol_g = [snap_to_candidates(g, cands) for g in gold]
    tol_p = [snap_to_candidates(p, cands) for p in pred]
    tol = classification_metrics(tol_g, tol_p, labels=cands)
    return {
        "accuracy": exact["accuracy"], "weighted_f1": exact["waf"], "weighted_precision": exact["weighted_precision"],
        "tolerant_accuracy": tol["accuracy"], "tolerant_weighted_f1": tol["waf"],
        "tolerant_weighted_precision": tol["weighted_precision"], "n": exact["n"],
    }


# ---------------------------------------------------------------------------------------------
# ERG
# ---------------------------------------------------------------------------------------------
# AvaMERG's fine emotions (EmpatheticDialogues' 32 plus common variants) -> 7 coarse classes.
COARSE_EMOTIONS: dict[str, str] = {}
for _coarse, _words in {
    "happy": "happy joy joyful glad content excited proud grateful thankful hopeful confident impressed "
    "caring trusting faithful prepared anticipating sentimental nostalgic cheerful delighted amused pleased "
    "relieved satisfied optimistic love loving",
    "sad": "sad sadness devastated disappointed lonely guilty ashamed embarrassed heartbroken depressed "
    "grief grieving regretful hurt unhappy miserable",
    "angry": "angry anger furious annoyed jealous irritated frustrated mad resentful",
    "fear": "fear afraid terrified anxious apprehensive scared nervous worried frightened",
    "surprise": "surprise surprised shocked amazed astonished startled",
    "disgust": "disgust disgusted contempt revolted",
    "neutral": "neutral calm",
}.items():
    for _w in _words.split():
        COARSE_EMOTIONS[_w] = _coarse


def coarse_emotion(label, mapping: Mapping[str, str] | None = None) -> str | None:
    """The coarse class of an emotion word, or None for an unknown word (never raises)."""
    key = norm_label(label)
    m = mapping or COARSE_EMOTIONS
    if key in m:
        return m[key]
    for tok in key.split():  # "very sad", "feeling anxious"
        if tok in m:
            return m[tok]
    return None


def erg_emotion_metrics(gold: Sequence, pred: Sequence, mapping: Mapping[str, str] | None = None) -> dict:
    """ERG speaker-emotion accuracy (exact, normalised) and hit rate over the coarse map: a hit
    when both map to the same coarse class. Unknown labels are misses and are counted."""
    n = len(gold)
    if n == 0:
        return {"accuracy": 0.0, "hit_rate": 0.0, "n": 0, "n_unknown_gold": 0, "n_unknown_pred": 0}
    acc = float(np.mean([norm_label(a) == norm_label(b) and norm_label(a) != "" for a, b in zip(gold, pred)]))
    cg = [coarse_emotion(x, mapping) for x in gold]
    cp = [coarse_emotion(x, mapping) for x in pred]
    hit = float(np.mean([a is not None and a == b for a, b in zip(cg, cp)]))
    return {"accuracy": acc, "hit_rate": hit, "n": n, "n_unknown_gold": cg.count(None), "n_unknown_pred": cp.count(None)}


def tokenize(text) -> list[str]:
    return _TOKEN_RE.findall(str(text).lower()) if text else []


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(responses: Iterable, n: int) -> dict:
    """Dist-n two ways: per-response (distinct/total n-grams of each response, averaged; a
    response shorter than n counts 0 -- the reference style) and corpus-level (distinct n-grams
    over all responses / all n-grams -- Empatheia style)."""
    per, total, uniq = [], 0, set()
    for r in responses:
        grams = _ngrams(tokenize(r), n)
        per.append(len(set(grams)) / len(grams) if grams else 0.0)
        total += len(grams)
        uniq.update(grams)
    return {"per_response": float(np.mean(per)) if per else 0.0, "corpus": len(uniq) / total if total else 0.0, "n": len(per)}


def bleu(hyps: Sequence, refs: Sequence) -> dict:
    """Corpus BLEU-4 (sacrebleu, 13a tokenisation) and BLEU-1..4 precisions, 0-100 scale."""
    import sacrebleu

    h = [str(x or "") for x in hyps]
    r = [str(x or "") for x in refs]
    if not h or not any(r):
        return {"bleu": 0.0, "precisions": [0.0] * 4, "n": len(h)}
    res = sacrebleu.corpus_bleu(h, [r])
    return {"bleu": float(res.score), "precisions": [float(p) for p in res.precisions], "n": len(h)}


def rouge_l(hyps: Sequence, refs: Sequence) -> dict:
    """Mean ROUGE-L F-measure (rouge-score, stemmed), 0-1 scale."""
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    vals = [sc.score(str(r or ""), str(h or ""))["rougeL"].fmeasure for h, r in zip(hyps, refs)]
    return {"rouge_l": float(np.mean(vals)) if vals else 0.0, "n": len(vals)}


# ---------------------------------------------------------------------------------------------
# OV-MER without wheels, ERI clue overlap
# ---------------------------------------------------------------------------------------------
def set_f(gold: Sequence, pred: Sequence) -> dict:
    """Wheel-free set F: per sample, P = |G&P|/|P| and R = |G&P|/|G| over normalised word sets
    (no mapping at all); samples with empty G skipped, empty P scores 0; P and R averaged, then
    F = 2PR/(P+R) -- the wheel metric's recipe without the wheels."""
    ps, rs = [], []
    for g, p in zip(gold, pred):
        G = {norm_label(x) for x in parse_label_list(g)} - {""}
        P = {norm_label(x) for x in parse_label_list(p)} - {""}
        if not G:
            continue
        inter = len(G & P)
        ps.append(inter / len(P) if P else 0.0)
        rs.append(inter / len(G))
    prec = float(np.mean(ps)) if ps else 0.0
    rec = float(np.mean(rs)) if rs else 0.0
    return {"f": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0, "precision": prec, "recall": rec, "n": len(ps)}


def _mentions(text_norm: str, phrase) -> bool:
    p = norm_text(phrase)
    return bool(p) and re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text_norm) is not None


def clue_overlap(rationales: Sequence, clues: Sequence[Mapping[str, Sequence[str]] | None]) -> dict:
    """ERI clue overlap from rendered clue phrases (normalised phrase match in the rationale).

    recall: per sample, the fraction of its gold clue phrases the rationale mentions, averaged
    over samples that have clues; also per modality. precision: per sample, of the phrases from
    the corpus clue inventory (every gold phrase of every sample) that the rationale mentions,
    the fraction that are this sample's own -- it penalises citing clues that belong to other
    clips, and is only defined when the rationale mentions at least one inventory phrase.
    """
    inventory = {norm_text(p) for c in clues if c for ps in c.values() for p in (ps or []) if norm_text(p)}
    recs: list[float] = []
    precs: list[float] = []
    mod: dict[str, list[float]] = {}
    for text, c in zip(rationales, clues):
        own = {m: {norm_text(p) for p in (ps or []) if norm_text(p)} for m, ps in (c or {}).items()}
        all_own = set().union(*own.values()) if own else set()
        if not all_own:
            continue
        t = norm_text(text)
        said = {p for p in all_own if _mentions(t, p)}
        recs.append(len(said) / len(all_own))
        for m, ps in own.items():
            if ps:
                mod.setdefault(m, []).append(len(ps & said) / len(ps))
        cited = {p for p in inventory if _mentions(t, p)}
        if cited:
            precs.append(len(cited & all_own) / len(cited))
    return {
        "recall": float(np.mean(recs)) if recs else 0.0,
        "precision": float(np.mean(precs)) if precs else 0.0,
        "recall_per_modality": {m: float(np.mean(v)) for m, v in sorted(mod.items())},
        "n": len(recs),
        "n_precision": len(precs),
    }


def mean_spread(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation, min and max of per-checkpoint values."""
    v = np.asarray([x for x in values if _num(x)], dtype=float)
    if v.size == 0:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "k": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "k": int(v.size)}

