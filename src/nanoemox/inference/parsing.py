"""Model answers -> structured fields, one parser per answer form (see nanoemox.prompts).

Every parser returns a `ParsedAnswer`; when the text does not follow the task's form the fields
that could be recovered are still filled and `parse_error` says what was wrong, so a malformed
answer is counted as such instead of silently looking like a valid (or an empty) one.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.schema import TASKS
from ..prompts import SENTIMENTS

# The fields every prediction line carries, in this order (the evaluation suite reads them).
PREDICTION_FIELDS = ("id", "task", "raw", "label", "labels", "score", "reason", "intent", "think", "reply", "emotion", "parse_error")


@dataclass
class ParsedAnswer:
    task: str
    raw: str
    label: str | None = None
    labels: list[str] = field(default_factory=list)
    score: float | None = None
    reason: str | None = None
    intent: str | None = None
    think: str | None = None
    reply: str | None = None
    emotion: str | None = None
    chain: dict[str, str] | None = None  # ERG chain of empathy {event, emotion, cause, goal}
    parse_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LABEL_RE = re.compile(r"most\s+likely\s+label\s+is\s*[:\-]?\s*(?P<label>[^.()\n]*?)\s*(?:\((?P<paren>[^)]*)\))?\s*(?:\.|$|\n)", re.IGNORECASE)
_SCORE_RE = re.compile(r"(?:score\s*[:=]?\s*)?(?P<num>[+-]?\d+(?:\.\d+)?)", re.IGNORECASE)
_OV_RE = re.compile(r"emotional\s+state\s+is\s*[:\-]?\s*(?P<list>[^\n]*)", re.IGNORECASE)
_THINK_RE = re.compile(r"<think>(?P<think>.*?)</think>(?P<reply>.*)", re.IGNORECASE | re.DOTALL)
_CHAIN_RES = {
    "event": re.compile(r"event\s+scenario\s+is\s+(?P<v>.*?)(?:\.\s*(?=Secondly|Thirdly|Fourthly|$)|$)", re.IGNORECASE | re.DOTALL),
    "emotion": re.compile(r"speaker'?s\s+emotion\s+is\s+(?P<v>.*?)(?:\.\s*(?=Thirdly|Fourthly|$)|$)", re.IGNORECASE | re.DOTALL),
    "cause": re.compile(r"the\s+cause\s+is\s+(?P<v>.*?)(?:\.\s*(?=Fourthly|$)|$)", re.IGNORECASE | re.DOTALL),
    "goal": re.compile(r"goal\s+of\s+the\s+response\s+is\s+(?P<v>.*?)\.?\s*$", re.IGNORECASE | re.DOTALL),
}
# How rationales name the emotion at the end ("So the emotion is sad.", "... she feels angry").
_ERI_EMOTION_RES = [
    re.compile(r"(?:emotion|emotional\s+state|feeling|mood)s?\s+(?:is|are|was|were|could\s+be|may\s+be|might\s+be|seems\s+to\s+be|appears\s+to\s+be)\s+(?:of\s+)?(?:a\s+|an\s+)?(?:feeling\s+of\s+)?(?P<w>[a-z][a-z\- ]*)", re.IGNORECASE),
    re.compile(r"\b(?:feels|is\s+feeling|seems|appears|looks|sounds)\s+(?:to\s+be\s+)?(?:very\s+|quite\s+|rather\s+)?(?P<w>[a-z][a-z\-]*)", re.IGNORECASE),
]
_LIST_SPLIT_RE = re.compile(r"\s*(?:,|;|/|\band\b|\bor\b)\s*", re.IGNORECASE)


def _clean_label(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("'\"*`").strip()).strip(" .,:;")


def _split_list(text: str) -> list[str]:
    out = []
    for part in _LIST_SPLIT_RE.split(text):
        w = _clean_label(part).lower()
        if w and w not in out:
            out.append(w)
    return out


def parse_label(raw: str) -> tuple[str | None, str | None, str | None]:
    """'The most likely label is X.' -> (X, text in parentheses or None, error or None)."""
    m = _LABEL_RE.search(raw)
    if not m:
        return None, None, "no 'The most likely label is X.' in the answer"
    label = _clean_label(m.group("label"))
    if not label:
        return None, m.group("paren"), "the label after 'The most likely label is' is empty"
    return label, m.group("paren"), None


def parse_answer(task: str, raw: str) -> ParsedAnswer:
    """Parse a decoded answer for `task` (one of TASKS)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    raw = raw or ""
    text = raw.strip()
    out = ParsedAnswer(task=task, raw=raw)
    if not text:
        out.parse_error = "empty answer"
        return out
    return _PARSERS[task](text, out)


def _parse_mer(text: str, out: ParsedAnswer) -> ParsedAnswer:
    label, _, err = parse_label(text)
    if label:
        out.label = label.lower()
        out.labels = [out.label]
        out.emotion = out.label
    out.parse_error = err
    return out


def _parse_mir(text: str, out: ParsedAnswer) -> ParsedAnswer:
    label, _, err = parse_label(text)
    if label:
        out.label = label  # intents keep their case ("Ask for help")
        out.labels = [label]
        out.intent = label
    out.parse_error = err
    return out


def _parse_msa(text: str, out: ParsedAnswer) -> ParsedAnswer:
    label, paren, err = parse_label(text)
    if label:
        out.label = label.lower()
        out.labels = [out.label]
        if out.label not in SENTIMENTS:
            err = f"sentiment label {label!r} is not one of {', '.join(SENTIMENTS)}"
    if paren is not None:
        m = _SCORE_RE.search(paren)
        if m:
            out.score = float(m.group("num"))
            if not -3.0 <= out.score <= 3.0:
                err = err or f"score {out.score:g} is outside [-3, 3]"
        else:
            err = err or f"no number in the score ({paren.strip()!r})"
    out.parse_error = err
    return out


def _parse_ovmer(text: str, out: ParsedAnswer) -> ParsedAnswer:
    m = _OV_RE.search(text)
    if not m:
        out.parse_error = "no \"The character's emotional state is ...\" in the answer"
        return out
    line = m.group("list").strip()
    line = line.split(".")[0] if "." in line else line
    out.labels = _split_list(line)
    if not out.labels:
        out.parse_error = "the emotion list is empty"
    else:
        out.label = out.labels[0]
    return out


def _eri_emotion(text: str) -> str | None:
    """The emotion named last in a rationale (its conclusion)."""
    best = None
    for rx in _ERI_EMOTION_RES:
        for m in rx.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group("w"))
        if best is not None:  # the first pattern family that matches wins: it is the explicit one
            break
    if best is None:
        return None
    words = _split_list(best[1])
    return words[0].split()[0] if words else None


def _parse_eri(text: str, out: ParsedAnswer) -> ParsedAnswer:
    out.reason = text
    emotion = _eri_emotion(text)
    if emotion:
        out.emotion = emotion.lower()
        out.label = out.emotion
        out.labels = [out.emotion]
    else:
        out.parse_error = "the rationale names no emotion (expected e.g. '... So the emotion is sad.')"
    return out


def _parse_erg(text: str, out: ParsedAnswer) -> ParsedAnswer:
    m = _THINK_RE.search(text)
    if not m:
        if "<think>" in text.lower():
            out.think = text.split(">", 1)[1].strip() if ">" in text else text
            out.parse_error = "unterminated <think> block (no </think>)"
        else:
            out.reply = text
            out.parse_error = "no <think>...</think> chain of empathy before the reply"
        return out
    think = m.group("think").strip()
    out.think = think
    out.reply = m.group("reply").strip() or None
    chain = {}
    for key, rx in _CHAIN_RES.items():
        cm = rx.search(think)
        if cm and cm.group("v").strip():
            chain[key] = cm.group("v").strip().rstrip(".")
    out.chain = chain or None
    if chain.get("emotion"):
        words = _split_list(chain["emotion"])
        out.emotion = words[0] if words else chain["emotion"].lower()
        out.label = out.emotion
        out.labels = [out.emotion]
    missing = [k for k in _CHAIN_RES if k not in chain]
    if missing:
        out.parse_error = "chain of empathy lacks: " + ", ".join(missing)
    elif not out.reply:
        out.parse_error = "no reply after </think>"
    return out


_PARSERS = {"mer": _parse_mer, "mir": _parse_mir, "msa": _parse_msa, "ovmer": _parse_ovmer, "eri": _parse_eri, "erg": _parse_erg}


def prediction_line(sample_id: str, parsed: ParsedAnswer) -> dict[str, Any]:
    """The prediction-file record of one (sample, task) answer (see PREDICTION_FIELDS)."""
    d = parsed.to_dict()
    d["id"] = sample_id
    return {k: d.get(k) for k in PREDICTION_FIELDS}
