"""Scoring prediction files against gold manifests, task by task, and across checkpoints.

Predictions (written by `nanoemox predict`): JSONL, one line per (id, task) with
{"id", "task", "raw", "label", "labels", "score", "reason", "intent", "think", "reply",
"emotion", "parse_error"}. A gold item without a prediction counts as wrong and is reported in
`missing`; predictions for ids not in the gold set are reported in `extra`.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..data.schema import BASIC_EMOTIONS, TASKS, AffectSample
from ..errors import DataError
from . import metrics as M
from .extract import Extractor, LexiconExtractor, LLMJudge
from .paper import avamerg_scores, last_turns, mintrec_scores, paper_waf
from .wheel import WheelSet, load_wheels, parse_label_list, wheel_hit_rate, wheel_set_metric

# The number each task is judged by: the paper's metric where PAPER_EVAL.md defines one (report
# bars use it); every other metric stays in the results as a labelled extra.
HEADLINE = {
    "mer": "hit_rate",  # MER-UniBench hit rate over the 5 wheels
    "msa": "paper_waf",  # WAF with neutral -> not positive, gold 0 dropped
    "mir": "exact_accuracy",  # MIntRec: exact, case-sensitive intent match
    "ovmer": "wheel_f",  # OV-MERD: emotion-wheel set F, level 1
    "eri": "rationale_wheel_f",  # EMER's deterministic complement (the judge scores when --judge)
    "erg": "paper_accuracy",  # AvaMERG: the authors' emotion parsing, exact match
}


def read_predictions(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):  # a trailing partial line from an interrupted writer
                    break
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(d, dict) or "id" not in d:
                raise DataError(f"{path}:{lineno}: expected an object with an 'id'")
            out.append(d)
    return out


def _pred_labels(p: Mapping | None) -> list[str]:
    if not p:
        return []
    labels = p.get("labels") or []
    if isinstance(labels, str):
        labels = parse_label_list(labels)
    if not labels and p.get("label"):
        labels = parse_label_list(p["label"])
    return [str(x).lower().strip() for x in labels if str(x).strip()]


def _g(p: Mapping | None, *keys: str):
    """The first present value among `keys` of a prediction (None when missing)."""
    for k in keys:
        if p and p.get(k) not in (None, "", []):
            return p[k]
    return None


def evaluate_predictions(preds: Sequence[Mapping], gold: Sequence[AffectSample], wheel_dir=None, *,
                         extractor: Extractor | None = None, judge: LLMJudge | None = None,
                         ws: WheelSet | None = None) -> dict:
    """Score predictions against gold samples; returns {task: metrics} for every task present in
    the gold set (each with "headline", "n", "missing", "parse_errors") plus "_summary"."""
    ws = ws or load_wheels(wheel_dir)
    index: dict[tuple[str, str | None], Mapping] = {}
    for p in preds:
        index[(str(p.get("id")), p.get("task"))] = p
        index.setdefault((str(p.get("id")), None), p)
    gold_ids = {s.id for s in gold}
    by_task: dict[str, list[tuple[AffectSample, Mapping | None]]] = {}
    for s in gold:
        for t in s.tasks():
            p = index.get((s.id, t))
            if p is None and (s.id, t) not in index:
                q = index.get((s.id, None))
                p = q if q is not None and q.get("task") in (None, t) else None
            by_task.setdefault(t, []).append((s, p))
    out: dict[str, Any] = {}
    for t in TASKS:
        if t not in by_task:
            continue
        pairs = by_task[t]
        res = _SCORERS[t](pairs, ws, extractor, judge)
        res["n"] = len(pairs)
        res["missing"] = sum(p is None for _, p in pairs)
        res["parse_errors"] = sum(1 for _, p in pairs if p and p.get("parse_error"))
        res["headline"] = {"metric": HEADLINE[t], "value": res.get(HEADLINE[t], 0.0)}
        out[t] = res
    out["_summary"] = {
        "n_gold": len(gold), "n_pred": len(preds),
        "extra": sum(1 for p in preds if str(p.get("id")) not in gold_ids),
        "wheel_source": ws.source,
    }
    return out


def _score_msa(pairs, ws, extractor, judge) -> dict:
    gl = [s.sentiment for s, _ in pairs]
    gs = [s.sentiment_score for s, _ in pairs]
    pl = [_g(p, "label") for _, p in pairs]
    ps = [_g(p, "score") for _, p in pairs]
    ps = [x if isinstance(x, (int, float)) else None for x in ps]
    res = M.msa_metrics(gl, pl, gs, ps)
    gold = [s if isinstance(s, (int, float)) else {"positive": 1.0, "negative": -1.0}.get(M.norm_label(l), 0.0) for l, s in zip(gl, gs)]
    pw = paper_waf(gold, [M.norm_label(x) for x in pl])
    res.update(paper_waf=pw["waf"], paper_accuracy=pw["accuracy"], paper_n_scored=pw["n_scored"])
    return res


def _closed_set(pairs, task: str, fallback: Sequence[str]) -> list[str]:
    labs = {c for s, _ in pairs for c in (s.candidates.get(task) or [])}
    return sorted(labs) if labs else list(fallback)


def _score_mer(pairs, ws, extractor, judge) -> dict:
    gold = [s.emotion for s, _ in pairs]
    pred = [_g(p, "label", "emotion") for _, p in pairs]
    lists = [_pred_labels(p) or ([str(x).lower()] if x else []) for (_, p), x in zip(pairs, pred)]
    cands = _closed_set(pairs, "mer", sorted({M.norm_label(g) for g in gold if g}) or BASIC_EMOTIONS)
    res = M.mer_metrics(gold, pred, candidates=cands, pred_lists=lists, ws=ws)
    res["confusion"] = M.confusion(gold, pred, cands)
    return res


def _score_mir(pairs, ws, extractor, judge) -> dict:
    gold = [s.intent for s, _ in pairs]
    pred = [_g(p, "intent", "label") for _, p in pairs]
    cands = _closed_set(pairs, "mir", sorted({str(g) for g in gold if g}))
    res = M.mir_metrics(gold, pred, cands)
    ex = mintrec_scores(gold, [("" if p is None else str(p).strip()) for p in pred])
    res.update(exact_accuracy=ex["accuracy"], exact_weighted_f1=ex["weighted_f1"], exact_weighted_precision=ex["weighted_precision"])
    res["confusion"] = M.confusion([M.snap_to_candidates(g, cands) for g in gold],
                                   [M.snap_to_candidates(p, cands) for p in pred], cands)
    return res


def _ov_pred(p, extractor) -> list[str]:
    labels = _pred_labels(p)
    if not labels and p and p.get("raw"):
        labels = extractor.extract(p["raw"]) if hasattr(extractor, "extract") else extractor([p["raw"]])[0]
    return labels


def _score_ovmer(pairs, ws, extractor, judge) -> dict:
    ext = extractor or LexiconExtractor(ws)
    gold = [list(s.ov_labels) for s, _ in pairs]
    pred = [_ov_pred(p, ext) for _, p in pairs]
    free = M.set_f(gold, pred)
    l1 = wheel_set_metric(gold, pred, ws, "level1")
    l2 = wheel_set_metric(gold, pred, ws, "level2")
    return {
        "wheel_free_f": free["f"], "wheel_free_precision": free["precision"], "wheel_free_recall": free["recall"],
        "wheel_f": l1["f"], "wheel_precision": l1["precision"], "wheel_recall": l1["recall"],
        "wheel_f_level2": l2["f"],
        "per_wheel": {k: {"precision": v["precision"], "recall": v["recall"], "f": v["f"]} for k, v in l1["per_wheel"].items()},
        "wheel_source": ws.source,
    }


def _score_eri(pairs, ws, extractor, judge) -> dict:
    ext = extractor or LexiconExtractor(ws)
    rationales = [_g(p, "reason", "raw") or "" for _, p in pairs]
    clues = [s.clues or None for s, _ in pairs]
    res: dict[str, Any] = {}
    co = M.clue_overlap(rationales, clues)
    res.update({"clue_recall": co["recall"], "clue_precision": co["precision"],
                "clue_recall_per_modality": co["recall_per_modality"], "n_with_clues": co["n"]})
    gold_emo = [s.emotion or "" for s, _ in pairs]
    pred_emo = [_g(p, "emotion", "label") for _, p in pairs]
    if any(gold_emo):
        res["emotion_accuracy"] = float(sum(M.norm_label(a) == M.norm_label(b) != "" for a, b in zip(gold_emo, pred_emo)) / len(pairs))
        lists = [[e] if e else ext.extract(r) for e, r in zip(pred_emo, rationales)]
        res["emotion_hit_rate"] = wheel_hit_rate(gold_emo, lists, ws)["hit_rate"]
    # the EMER-style score: emotion words extracted from both rationales, wheel set F
    gold_reasons = [s.reason or "" for s, _ in pairs]
    ov = wheel_set_metric(ext(gold_reasons), ext(rationales), ws)
    res.update({"rationale_wheel_f": ov["f"], "rationale_wheel_precision": ov["precision"],
                "rationale_wheel_recall": ov["recall"], "extractor": getattr(ext, "name", "custom")})
    if judge is not None:
        j = judge(rationales, gold_reasons)
        res.update({"judge_clue": j["clue_score"], "judge_emotion": j["emotion_score"], "judge_missing": j["n_missing"]})
    return res


def _score_erg(pairs, ws, extractor, judge) -> dict:
    gold_emo = [((s.chain_of_empathy or {}).get("emotion") or s.emotion or "") for s, _ in pairs]
    pred_emo = [_g(p, "emotion", "label") for _, p in pairs]
    emo = M.erg_emotion_metrics(gold_emo, pred_emo)
    replies = [_g(p, "reply", "raw") or "" for _, p in pairs]
    refs = [s.response or "" for s, _ in pairs]
    d1, d2 = M.distinct_n(replies, 1), M.distinct_n(replies, 2)
    # the paper scores the last turn of each dialogue only
    keep = {id(s) for s in last_turns([s for s, _ in pairs])}
    last = [(g, _g(p, "raw") or "") for g, (s, p) in zip(gold_emo, pairs) if id(s) in keep]
    paper = avamerg_scores([g for g, _ in last], [r for _, r in last])
    return {
        "paper_accuracy": paper["accuracy"] / 100, "paper_hit_rate": paper["hit_rate"] / 100,
        "paper_dist1": paper["dist1"] / 100, "paper_dist2": paper["dist2"] / 100, "paper_n_unmapped": paper["n_unmapped"],
        "paper_n_last_turns": paper["n"],
        "emotion_accuracy": emo["accuracy"], "emotion_hit_rate": emo["hit_rate"],
        "n_unknown_gold_emotion": emo["n_unknown_gold"], "n_unknown_pred_emotion": emo["n_unknown_pred"],
        "dist1": d1["per_response"], "dist2": d2["per_response"],
        "dist1_corpus": d1["corpus"], "dist2_corpus": d2["corpus"],
        "bleu": M.bleu(replies, refs)["bleu"], "rouge_l": M.rouge_l(replies, refs)["rouge_l"],
    }


_SCORERS: dict[str, Callable] = {"msa": _score_msa, "mer": _score_mer, "mir": _score_mir,
                                 "ovmer": _score_ovmer, "eri": _score_eri, "erg": _score_erg}


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _scalars(d: Mapping, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if k in ("confusion", "headline") or k.startswith("_"):
            continue
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[key] = float(v)
        elif isinstance(v, Mapping):
            out.update(_scalars(v, key + "."))
    return out


def aggregate_checkpoints(results: Sequence[Mapping]) -> dict:
    """Mean and spread of every scalar metric over checkpoints: {task: {metric: {mean, std,
    min, max, k}}}. Reporting the mean over a range of epochs replaces picking the best test
    checkpoint (a reference fault)."""
    agg: dict[str, dict] = {}
    tasks = [t for t in TASKS if any(t in r for r in results)]
    for t in tasks:
        per = [_scalars(r[t]) for r in results if t in r]
        keys = sorted({k for p in per for k in p})
        agg[t] = {k: M.mean_spread([p[k] for p in per if k in p]) for k in keys}
    return agg


# ---------------------------------------------------------------------------------------------
# OV-MER label CSVs and the EMER reference files
# ---------------------------------------------------------------------------------------------
def read_csv_columns(path: str | os.PathLike, columns: tuple[str, ...]) -> list[list[str]]:
    """The named columns of a CSV as lists of strings (headers matched case-insensitively, blank
    cells kept as ""); a missing file, an unreadable CSV or a missing column is one DataError line."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in columns if c not in cols]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(columns)})")
    return [df[cols[c]].tolist() for c in columns]


def read_label_csv(path: str | os.PathLike) -> tuple[list[str], list[str], list[str]]:
    """name,gt,pred columns; blank cells are empty lists."""
    names, gold, pred = read_csv_columns(path, ("name", "gt", "pred"))
    return names, gold, pred


def score_ovmer_csv(path, wheel_dir=None, level: str = "level1") -> dict:
    """The `evaluate ovmer` result: {"f", "precision", "recall", "per_wheel": {w: {precision,
    recall}}} over the 5 wheels."""
    _, gold, pred = read_label_csv(path)
    ws = load_wheels(wheel_dir, fallback=True)
    r = wheel_set_metric(gold, pred, ws, level)
    return {"f": r["f"], "precision": r["precision"], "recall": r["recall"],
            "per_wheel": {k: {"precision": v["precision"], "recall": v["recall"]} for k, v in r["per_wheel"].items()}}


def score_eri_files(root: str | os.PathLike, wheel_dir=None, extractor: Extractor | None = None) -> list[dict]:
    """Score every prediction CSV (names, pred_label, chi_reasons) under `root` against the
    gt-eng.csv beside it (names, emotions, subtitles, reasons): emotion words are extracted from
    the predicted and the gold rationales (a non-empty pred_label is used as is), then wheel set
    F/P/R (level1, level2) and the hit rate of the gold `emotions` label."""
    import pandas as pd

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    ws = load_wheels(wheel_dir)
    ext = extractor or LexiconExtractor(ws)
    rows = []
    for pred_csv in sorted(p for p in root.rglob("*.csv") if p.name not in ("gt-eng.csv", "gt.csv")):
        gt_csv = pred_csv.parent / "gt-eng.csv"
        if not gt_csv.is_file():
            raise DataError(f"{pred_csv}: no gt-eng.csv beside it")
        gt = pd.read_csv(gt_csv, dtype=str, keep_default_na=False)
        pr = pd.read_csv(pred_csv, dtype=str, keep_default_na=False)
        for need, df, f in (({"names", "reasons", "emotions"}, gt, gt_csv), ({"names"}, pr, pred_csv)):
            if not need <= set(df.columns):
                raise DataError(f"{f}: missing column(s) {', '.join(sorted(need - set(df.columns)))}")
        text_col = "chi_reasons" if "chi_reasons" in pr.columns else "reasons" if "reasons" in pr.columns else None
        pmap = dict(zip(pr["names"], pr.index))
        names = list(gt["names"])
        gold_labels = ext(list(gt["reasons"]))
        pred_labels, missing = [], 0
        for name in names:
            if name not in pmap:
                pred_labels.append([])
                missing += 1
                continue
            row = pr.loc[pmap[name]]
            given = parse_label_list(row.get("pred_label", ""))
            pred_labels.append(given or (ext.extract(row[text_col]) if text_col else []))
        l1 = wheel_set_metric(gold_labels, pred_labels, ws, "level1")
        l2 = wheel_set_metric(gold_labels, pred_labels, ws, "level2")
        hit = wheel_hit_rate(list(gt["emotions"]), pred_labels, ws)
        rows.append({
            "model": pred_csv.parent.name, "file": str(pred_csv.relative_to(root)),
            "f": l1["f"], "precision": l1["precision"], "recall": l1["recall"],
            "f_level2": l2["f"], "hit_rate": hit["hit_rate"], "n": len(names), "n_scored": l1["n"],
            "missing": missing, "mean_pred_labels": sum(map(len, pred_labels)) / max(len(pred_labels), 1),
            "extractor": getattr(ext, "name", "custom"), "wheel_source": ws.source,
        })
    if not rows:
        raise DataError(f"{root}: no prediction CSVs found")
    return rows


def write_label_csv(path, names: Sequence[str], gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    """Write name,gt,pred (comma-joined lists); the input format of `evaluate ovmer`."""
    import io

    from ..storage import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "gt", "pred"])
    for n, g, p in zip(names, gold, pred):
        w.writerow([n, ", ".join(g), ", ".join(p)])
    atomic_write_text(path, buf.getvalue())
