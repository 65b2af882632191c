"""MER-UniBench (the paper's Table 2) and AvaMERG (Table 5) from prediction files.

Layout: a data folder with one manifest per dataset and a prediction folder with one prediction
file per dataset, both named by the dataset key (`mer2023.jsonl`, ..., `ovmerd.jsonl`; see
DATASETS). Every answer is the model's free-text reply to the `[Recogn_OV]` question (`nanoemox
predict --protocol unibench`); an extractor turns it into an emotion list (and, for the MSA sets,
a sentiment); then each group is scored by its paper metric (`paper.py`). A gold sample without a
prediction counts as an empty answer (wrong); an extraction failure is left out and counted as
missing, never scored 0. A dataset whose manifest or predictions are absent is shown as missing
and the Avg is then marked partial.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..data.schema import read_manifest
from ..errors import DataError
from .extractors import LEXICON_NOTE, BaseExtractor
from .paper import (
    PAPER_TABLE2, PAPER_TABLE5, UNIBENCH_COLUMNS, avamerg_scores, last_turns, ovmerd_f, paper_waf, unibench_hit_rate,
)
from .runner import read_predictions
from .wheel import WheelSet, load_wheels

# (file key, column, group)
DATASETS: tuple[tuple[str, str, str], ...] = (
    ("mer2023", "MER2023", "mer"), ("mer2024", "MER2024", "mer"), ("meld", "MELD", "mer"), ("iemocap", "IEMOCAP", "mer"),
    ("mosi", "MOSI", "msa"), ("mosei", "MOSEI", "msa"), ("sims", "SIMS", "msa"), ("simsv2", "SIMSv2", "msa"),
    ("ovmerd", "OV-MERD", "ov"),
)
METRIC = {"mer": "hit rate", "msa": "WAF", "ov": "wheel set F"}
assert tuple(c for _, c, _ in DATASETS) == UNIBENCH_COLUMNS


def _answers(preds: Sequence[Mapping], ids: Sequence[str]) -> tuple[list[str], int]:
    """The free-text answer per gold id (the ovmer line preferred) and how many ids had none."""
    by_id: dict[str, Mapping] = {}
    for p in preds:
        sid = str(p.get("id"))
        if sid not in by_id or p.get("task") == "ovmer":
            by_id[sid] = p
    out = [str((by_id.get(i) or {}).get("raw") or "") for i in ids]
    return out, sum(i not in by_id for i in ids)


def score_dataset(group: str, samples, preds: Sequence[Mapping], extractor: BaseExtractor, ws: WheelSet) -> dict:
    ids = [s.id for s in samples]
    answers, no_pred = _answers(preds, ids)
    lists = extractor.emotions(answers)
    keep = [i for i, x in enumerate(lists) if x is not None]
    res: dict = {"n": len(ids), "n_no_prediction": no_pred, "n_missing": len(ids) - len(keep)}
    if group == "mer":
        r = unibench_hit_rate([samples[i].emotion or "" for i in keep], [lists[i] for i in keep], ws)
        res.update(score=r["hit_rate"], per_wheel=r["per_wheel"], n_scored=r["n_scored"])
    elif group == "ov":
        r = ovmerd_f([list(samples[i].ov_labels) for i in keep], [lists[i] for i in keep], ws)
        res.update(score=r["f"], precision=r["precision"], recall=r["recall"], n_scored=r["n_scored"])
    else:
        sents = extractor.sentiments([lists[i] for i in keep])
        ok = [(i, s) for i, s in zip(keep, sents) if s is not None]
        res["n_missing"] = len(ids) - len(ok)
        scores = [samples[i].sentiment_score if samples[i].sentiment_score is not None else
                  {"positive": 1.0, "negative": -1.0}.get(samples[i].sentiment or "", 0.0) for i, _ in ok]
        r = paper_waf(scores, [s for _, s in ok])
        res.update(score=r["waf"], accuracy=r["accuracy"], n_scored=r["n_scored"], n_gold_zero=r["n_gold_zero"],
                   n_unparsed=r["n_unparsed"])
    res["metric"] = METRIC[group]
    return res


def score_unibench(data_dir, pred_dir, extractor: BaseExtractor, ws: WheelSet | None = None, model: str = "ours",
                   limit: int | None = None) -> dict:
    """Table 2 as a dict: per column the score (fraction) or None when absent, Avg over present."""
    ws = ws or load_wheels()
    data_dir, pred_dir = Path(data_dir), Path(pred_dir)
    for d, what in ((data_dir, "data"), (pred_dir, "prediction")):
        if not d.is_dir():
            raise DataError(f"{d}: {what} folder not found")
    cols: dict[str, dict] = {}
    for key, col, group in DATASETS:
        man, pred = data_dir / f"{key}.jsonl", pred_dir / f"{key}.jsonl"
        if not man.is_file() or not pred.is_file():
            cols[col] = {"score": None, "absent": "manifest" if not man.is_file() else "predictions", "metric": METRIC[group]}
            continue
        samples = read_manifest(man, resolve_media=False)[:limit]
        cols[col] = score_dataset(group, samples, read_predictions(pred), extractor, ws)
    present = [c["score"] for c in cols.values() if c.get("score") is not None]
    return {
        "model": model, "columns": cols,
        "avg": sum(present) / len(present) if present else None, "n_present": len(present), "partial": len(present) < len(DATASETS),
        "extractor": extractor.identity, "extractor_is_proxy": extractor.is_proxy, "extractor_stats": dict(extractor.stats),
        "extractor_errors": list(dict.fromkeys(getattr(extractor, "errors", [])))[:5],
        "wheel_source": ws.source,
    }


def _pct(v) -> str:
    return "missing" if v is None else f"{100 * v:.2f}"


def unibench_markdown(res: Mapping) -> str:
    head = "| model | " + " | ".join(UNIBENCH_COLUMNS) + " | Avg |\n|---|" + "---|" * (len(UNIBENCH_COLUMNS) + 1) + "\n"
    avg = _pct(res["avg"]) + (f" (partial, {res['n_present']}/9)" if res["partial"] and res["avg"] is not None else "")
    rows = f"| {res['model']} (nanoemox) | " + " | ".join(_pct(res["columns"][c].get("score")) for c in UNIBENCH_COLUMNS) + f" | {avg} |\n"
    for name, vals, a in PAPER_TABLE2:
        rows += f"| {name}, paper | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {a:.2f} |\n"
    notes = [f"Metrics: hit rate (MER2023, MER2024, MELD, IEMOCAP), WAF (MOSI, MOSEI, SIMS, SIMSv2), "
             f"emotion-wheel set F (OV-MERD), x100. Extractor: {res['extractor']}."]
    if res["extractor_is_proxy"]:
        notes.append("**Proxy extractor**: " + LEXICON_NOTE + ".")
    missing = {c: v["n_missing"] for c, v in res["columns"].items() if v.get("n_missing")}
    if missing:
        notes.append("Extraction failures left out (missing, not scored 0): " + ", ".join(f"{c} {n}" for c, n in missing.items()) + "."
                     + (f" First error: {res['extractor_errors'][0]}" if res.get("extractor_errors") else ""))
    absent = [c for c, v in res["columns"].items() if v.get("score") is None]
    if absent:
        notes.append("Absent datasets: " + ", ".join(absent) + "; Avg is over the datasets present.")
    return head + rows + "\n" + "\n".join(notes) + "\n"


def avamerg_from_predictions(preds: Sequence[Mapping], samples) -> dict:
    """Table 5 numbers on the last turn of each dialogue (the manifest's ERG samples)."""
    chosen = last_turns([s for s in samples if s.response or s.task == "erg"])
    by_id = {}
    for p in preds:
        if p.get("task") in (None, "erg") or str(p.get("id")) not in by_id:
            by_id[str(p.get("id"))] = p
    gold = [((s.chain_of_empathy or {}).get("emotion") or s.emotion or "") for s in chosen]
    responses = [str((by_id.get(s.id) or {}).get("raw") or "") for s in chosen]
    res = avamerg_scores(gold, responses)
    res["n_no_prediction"] = sum(s.id not in by_id for s in chosen)
    res["n_dialogues"] = len(chosen)
    return res


def avamerg_markdown(res: Mapping, model: str = "ours") -> str:
    head = "| model | Acc / Hit | Dist-1 | Dist-2 |\n|---|---|---|---|\n"
    rows = f"| {model} (nanoemox) | {res['accuracy']:.2f} / {res['hit_rate']:.2f} | {res['dist1']:.2f} | {res['dist2']:.2f} |\n"
    for name, v in PAPER_TABLE5:
        rows += f"| {name}, paper | {v['accuracy']:.2f} / {v['hit_rate']:.2f} | {v['dist1']:.2f} | {v['dist2']:.2f} |\n"
    note = (f"\nLast turns of {res['n']} dialogues; {res['n_unmapped']} predicted emotion(s) outside the 8-class MEAD "
            f"projection counted as misses ({res['n_unknown']} with no emotion found); Dist-n per response.\n")
    return head + rows + note
