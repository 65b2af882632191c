"""EMER rationales the paper's way (PAPER_EVAL.md section 3): an LLM judge at T=0 scores (a) clue
overlap and (b) emotion overlap between the predicted and the gold rationale, 1-10 each, the first
number in its reply being the score; mean over samples. Unlike the authors' judge (which fell to 0
on API errors), a failed or unparsable call is retried and then reported missing, never 0.

The deterministic complement: emotion words extracted from both rationales (any extractor of
extractors.py) and scored with the wheel set F.
"""
from __future__ import annotations

import re
from typing import Sequence

from .extractors import BaseExtractor, OpenAIExtractor
from .paper import ovmerd_f
from .wheel import WheelSet

CLUE_PROMPT = (
    "Please act as an expert in the field of emotions. Below are two descriptions of the same character. "
    "First summarise the emotional state each description conveys and the clues it relies on, then rate "
    "how much the clues of the two descriptions overlap, from 1 (none) to 10 (all). Begin your reply "
    "with the score.\nDescription 1 (reference): {reference}\nDescription 2 (prediction): {prediction}\nScore: "
)
EMOTION_PROMPT = (
    "Please act as an expert in the field of emotions. Below are two descriptions of the same character. "
    "First reduce each description to the emotion words it expresses, then rate how much the two sets "
    "of emotions overlap, from 1 (none) to 10 (identical). Begin your reply with the score.\n"
    "Description 1 (reference): {reference}\nDescription 2 (prediction): {prediction}\nScore: "
)
_NUM_RE = re.compile(r"\d+(?:\.\d+)?")


def first_score(reply: str | None) -> float | None:
    """The first number in the judge's reply, when it lies in 1..10; else None (missing)."""
    if not reply:
        return None
    m = _NUM_RE.search(reply)
    if not m:
        return None
    v = float(m.group(0))
    return v if 1 <= v <= 10 else None


def judge_rationales(judge: OpenAIExtractor, predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Mean clue and emotion overlap (1-10) over the judged samples; failures counted as missing."""
    judge.check()
    out: dict = {}
    for key, prompt in (("clue", CLUE_PROMPT), ("emotion", EMOTION_PROMPT)):
        replies = judge._complete([prompt.format(reference=r or "", prediction=p or "") for p, r in zip(predictions, references)])
        scores = [first_score(x) for x in replies]
        ok = [x for x in scores if x is not None]
        out[key] = sum(ok) / len(ok) if ok else None
        out[f"{key}_per_sample"] = scores
        out[f"n_{key}_missing"] = len(scores) - len(ok)
    out["n"] = len(predictions)
    return out


def rationale_wheel_f(extractor: BaseExtractor, predictions: Sequence[str], references: Sequence[str], ws: WheelSet) -> dict:
    """The deterministic complement: wheel set F between the emotion words of both rationales
    (samples whose extraction failed on either side are left out and counted)."""
    gold = extractor.emotions(list(references))
    pred = extractor.emotions(list(predictions))
    keep = [i for i in range(len(gold)) if gold[i] is not None and pred[i] is not None]
    r = ovmerd_f([gold[i] for i in keep], [pred[i] for i in keep], ws)
    return {"f": r["f"], "precision": r["precision"], "recall": r["recall"], "n": len(gold),
            "n_scored": r["n_scored"], "n_missing": len(gold) - len(keep), "extractor": extractor.identity}
