"""Conversation datasets: MELD, IEMOCAP (four classes), M3ED (emotion recognition) and AvaMERG
(empathic response generation).

- MELD CSV (`train_sent_emo.csv`...): Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID,
  Utterance_ID, Season, Episode, StartTime, EndTime. Clip `dia{D}_utt{U}.mp4`, looked up in the
  split's folder first (`train_splits/`, `dev_splits_complete/`, `output_repeated_splits_test/`).
  Emotions joy/sadness/anger map to happy/sad/angry.
- IEMOCAP four-class (neutral, happy + excited, angry, sad; other labels skipped): the release
  folder (`Session*/dialog/EmoEvaluation/*.txt` + `transcriptions/`, audio
  `Session*/sentences/wav/<dialog>/<utt>.wav`), or a CSV/TSV with an utterance id column
  (`name`/`id`/`utterance`/`wav`) and a label column (`label`/`emotion`), text optional.
- M3ED `annotation.json`: {dialog: {"Speaker": {...}, "Dialog": {utt_id: {"Text", "StartTime",
  "EndTime", "EmoAnnotation": {"final_main_emo"...}}}}}; clip `<utt_id>.mp4`.
- AvaMERG JSON (train/valid/test.json): a list of conversations {"conversation_id", "topic",
  "speaker_profile", "listener_profile", "turns": [{"dialogue_history": [{"index", "role",
  "utterance"}], "response", "chain_of_empathy": {"event_scenario", "speaker_emotion",
  "emotion_cause", "goal_to_response"}}]} (also the task-1 form {"dia_ids": [...],
  "conversations": [...]}). One sample per turn: the last speaker utterance is the transcript, the
  turns before it the history, the listener reply the response; the speaker's clip is
  `dia{N}utt{k}.mp4` (N: conversation id without leading zeros, k: the utterance index).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from ...errors import DataError
from ..schema import BASIC_EMOTIONS, CHAIN_KEYS, AffectSample
from .base import (
    Context,
    basic_emotion,
    emotion_label,
    fix_mojibake,
    has_column,
    pick,
    read_json,
    read_table,
    register,
    split_from_name,
)

SEVEN = list(BASIC_EMOTIONS)
# AvaMERG's speaker emotions (EmpatheticDialogues' 32): the options of its speaker-emotion (MER)
# question, which the paper's phase 3 asks beside the empathic reply.
AVAMERG_EMOTIONS = (
    "surprised", "excited", "annoyed", "proud", "angry", "sad", "grateful", "lonely", "impressed", "afraid", "disgusted",
    "confident", "terrified", "hopeful", "anxious", "disappointed", "joyful", "prepared", "guilty", "furious", "nostalgic",
    "jealous", "anticipating", "embarrassed", "content", "devastated", "sentimental", "caring", "trusting", "ashamed",
    "apprehensive", "faithful",
)
IEMOCAP_FOUR = ["angry", "happy", "neutral", "sad"]
_IEMOCAP_MAP = {"neu": "neutral", "neutral": "neutral", "hap": "happy", "happy": "happy", "exc": "happy", "excited": "happy",
                "happiness": "happy", "ang": "angry", "angry": "angry", "anger": "angry", "sad": "sad", "sadness": "sad"}
_MELD_SPLIT_DIRS = {"train": ("train_splits", "train"), "val": ("dev_splits_complete", "dev_splits", "dev"),
                    "test": ("output_repeated_splits_test", "test_splits", "test")}


@register("meld", description="MELD CSV (Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, ...)", task="mer", dataset_dirs=("MELD", "MELD.Raw"))
def meld(ctx: Context):
    rows = read_table(ctx.src)
    if rows and not has_column(rows, "utterance") or rows and not has_column(rows, "emotion"):
        raise DataError(f"{ctx.src}: not a MELD CSV (needs Utterance and Emotion columns)")
    split = split_from_name(ctx.src)
    dirs = _MELD_SPLIT_DIRS.get(split or "", ())
    for i, row in enumerate(rows, 1):
        where = f"{ctx.src.name}:row {i}"
        dia, utt = pick(row, "dialogue_id"), pick(row, "utterance_id")
        raw = pick(row, "emotion")
        emo = basic_emotion(raw)
        if emo is None or dia == "" or utt == "":
            ctx.skip(where, f"emotion {raw!r} unknown" if dia and utt else "no Dialogue_ID / Utterance_ID")
            continue
        name = f"dia{dia}_utt{utt}"
        video = ctx.locator.by_name(*[f"{d}/{name}" for d in dirs], name)
        sentiment = pick(row, "sentiment").lower() or None
        meta = {k: v for k, v in (("speaker", fix_mojibake(pick(row, "speaker"))), ("dialogue_id", dia), ("utterance_id", utt),
                                  ("season", pick(row, "season")), ("episode", pick(row, "episode")),
                                  ("start", pick(row, "starttime")), ("end", pick(row, "endtime")), ("label", raw)) if v}
        if split:
            meta["split"] = split
        yield AffectSample(
            id=f"{split}_{name}" if split else name, source=ctx.spec.name, task="mer", video=video,
            transcript=fix_mojibake(pick(row, "utterance")), emotion=emo,
            sentiment=sentiment if sentiment in ("positive", "negative", "neutral") else None,
            candidates={"mer": SEVEN}, meta=meta,
        )


# --- IEMOCAP -----------------------------------------------------------------------------------
_EVAL_RE = re.compile(r"^\[(\d+\.?\d*)\s*-\s*(\d+\.?\d*)\]\s+(\S+)\s+(\S+)\s+\[")
_TRANS_RE = re.compile(r"^(\S+)\s+\[[\d.\s-]+\]:\s*(.*)$")


@register(
    "iemocap",
    description="IEMOCAP four classes (neutral, happy+excited, angry, sad): the release folder or a CSV (utterance id, label[, text])",
    task="mer",
    dataset_dirs=("IEMOCAP", "IEMOCAP_full_release"),
    media="audio",
)
def iemocap(ctx: Context):
    if ctx.src.is_dir():
        yield from _iemocap_release(ctx)
        return
    for i, row in enumerate(read_table(ctx.src), 1):
        where = f"{ctx.src.name}:row {i}"
        name = pick(row, "name", "id", "utterance_id", "utterance", "wav", "file", "path", "0")
        raw = pick(row, "label", "emotion", "emo", "1")
        emo = _IEMOCAP_MAP.get(raw.strip().lower())
        if not name:
            ctx.skip(where, "no utterance id")
            continue
        if emo is None:
            ctx.skip(where, f"label {raw!r} is not one of the four classes")
            continue
        stem = Path(name).stem
        dialog = stem.rsplit("_", 1)[0]
        session = f"Session{int(stem[3:5])}" if re.match(r"Ses\d\d", stem) else ""
        cands = [f"{session}/sentences/wav/{dialog}/{stem}"] if session else []
        audio = ctx.locator.by_name(*cands, name, stem)
        yield AffectSample(
            id=stem, source=ctx.spec.name, task="mer", audio=audio, transcript=pick(row, "text", "transcript", "transcription"),
            emotion=emo, candidates={"mer": IEMOCAP_FOUR}, meta={"label": raw, **({"session": session} if session else {})},
        )


def _iemocap_release(ctx: Context) -> Iterator[AffectSample]:
    evals = sorted(ctx.src.rglob("EmoEvaluation/*.txt"))
    if not evals:
        raise DataError(f"{ctx.src}: no Session*/dialog/EmoEvaluation/*.txt files (not an IEMOCAP release folder)")
    texts: dict[str, str] = {}
    for t in sorted(ctx.src.rglob("transcriptions/*.txt")):
        for line in t.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _TRANS_RE.match(line.strip())
            if m:
                texts[m.group(1)] = m.group(2).strip()
    for ev in evals:
        session_dir = ev.parents[2]  # SessionN/dialog/EmoEvaluation/x.txt
        for n, line in enumerate(ev.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            m = _EVAL_RE.match(line.strip())
            if not m:
                continue
            start, end, utt, raw = m.groups()
            where = f"{ev.name}:{n}"
            emo = _IEMOCAP_MAP.get(raw.lower())
            if emo is None:
                ctx.skip(where, f"label {raw!r} is not one of the four classes")
                continue
            dialog = utt.rsplit("_", 1)[0]
            wav = session_dir / "sentences" / "wav" / dialog / f"{utt}.wav"
            audio = str(wav) if wav.exists() else ctx.locator.by_name(utt)
            meta = {"label": raw, "session": session_dir.name, "dialog": dialog, "start": float(start), "end": float(end)}
            avi = session_dir / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            if avi.exists():
                meta["dialog_video"] = str(avi)
            yield AffectSample(id=utt, source=ctx.spec.name, task="mer", audio=audio, transcript=texts.get(utt, ""), emotion=emo,
                               candidates={"mer": IEMOCAP_FOUR}, meta=meta)


# --- M3ED ------------------------------------------------------------------------------------------
def _m3ed_emotion(ann: Any) -> tuple[str | None, str]:
    if isinstance(ann, dict):
        for k in ("final_main_emo", "final_mian_emo", "main_emotion", "emotion"):
            if ann.get(k):
                raw = ann[k]
                return basic_emotion(raw), str(raw)
        return None, ""
    if isinstance(ann, str):
        return basic_emotion(ann), ann
    return None, ""


@register("m3ed", description="M3ED annotation.json (dialogs -> utterances with Text and EmoAnnotation.final_main_emo)", task="mer", dataset_dirs=("M3ED",))
def m3ed(ctx: Context):
    data = read_json(ctx.src)
    if not isinstance(data, dict):
        raise DataError(f"{ctx.src}: expected a JSON object keyed by dialog")
    for dialog_id, dialog in data.items():
        if not isinstance(dialog, dict):
            ctx.skip(str(dialog_id), "not a JSON object")
            continue
        speakers = dialog.get("Speaker") or dialog.get("speakers") or {}
        utts = dialog.get("Dialog") or dialog.get("dialog") or dialog.get("utterances") or {}
        items = utts.items() if isinstance(utts, dict) else ((u.get("id") or u.get("UtteranceId") or f"{dialog_id}_{i}", u) for i, u in enumerate(utts))
        for utt_id, u in items:
            where = f"{ctx.src.name}:{utt_id}"
            if not isinstance(u, dict):
                ctx.skip(where, "not a JSON object")
                continue
            emo, raw = _m3ed_emotion(u.get("EmoAnnotation") or u.get("emotion") or u.get("Emotion"))
            if emo is None:
                ctx.skip(where, f"emotion {raw!r} unknown" if raw else "no emotion annotation")
                continue
            spk = u.get("Speaker") or (str(utt_id).split("_")[-2] if str(utt_id).count("_") >= 2 else "")
            meta = {"dialog": str(dialog_id), "label": raw}
            if spk:
                meta["speaker"] = speakers.get(spk, spk) if isinstance(speakers, dict) else spk
            for k in ("StartTime", "EndTime"):
                if u.get(k):
                    meta[k.lower().replace("time", "")] = u[k]
            yield AffectSample(
                id=str(utt_id), source=ctx.spec.name, task="mer", video=ctx.locator.by_name(str(utt_id), f"{dialog_id}/{utt_id}"),
                transcript=str(u.get("Text") or u.get("text") or "").strip(), emotion=emo, candidates={"mer": SEVEN}, meta=meta,
            )


# --- AvaMERG -----------------------------------------------------------------------------------
_COE_KEYS = {"event": ("event_scenario", "event"), "emotion": ("speaker_emotion", "emotion"), "cause": ("emotion_cause", "cause"),
             "goal": ("goal_to_response", "goal")}


def _coe(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key in CHAIN_KEYS:
        for k in _COE_KEYS[key]:
            v = raw.get(k)
            if v is not None and str(v).strip():
                out[key] = str(v).strip()
                break
    return out


def _avamerg_items(data: Any) -> Iterator[tuple[str, dict, list[dict]]]:
    """(conversation id, conversation-level fields, turns) for the known AvaMERG layouts."""
    if isinstance(data, dict) and "conversations" in data:  # task-1 form
        ids = data.get("dia_ids") or []
        for i, conv in enumerate(data["conversations"]):
            yield str(ids[i] if i < len(ids) else i), {}, [conv]
        return
    if isinstance(data, dict):
        data = data.get("data") or list(data.values())
    for i, item in enumerate(data or []):
        if not isinstance(item, dict):
            continue
        cid = str(item.get("conversation_id") or item.get("dia_id") or item.get("id") or i)
        turns = item.get("turns") if isinstance(item.get("turns"), list) else [item]
        yield cid, item, turns


@register(
    "avamerg",
    description="AvaMERG dialogues (conversation_id, turns[dialogue_history, response, chain_of_empathy])",
    task="erg",
    dataset_dirs=("AvaMERG", "avamerg"),
)
def avamerg(ctx: Context):
    data = read_json(ctx.src)
    split = split_from_name(ctx.src)
    for cid, conv, turns in _avamerg_items(data):
        dia_num = cid.lstrip("0") or "0"
        for t, turn in enumerate(turns):
            where = f"{ctx.src.name}:{cid}/turn {t}"
            if not isinstance(turn, dict):
                ctx.skip(where, "not a JSON object")
                continue
            hist = turn.get("dialogue_history") or turn.get("history") or []
            response = str(turn.get("response") or "").strip()
            coe = _coe(turn.get("chain_of_empathy") or turn.get("coe"))
            if not hist or not response:
                ctx.skip(where, "no dialogue history" if not hist else "no response")
                continue
            lines = []
            for k, h in enumerate(hist):
                if isinstance(h, dict):
                    role = str(h.get("role") or ("speaker" if k % 2 == 0 else "listener"))
                    lines.append((h.get("index", k), role, str(h.get("utterance") or h.get("text") or "").strip()))
                else:
                    lines.append((k, "speaker" if k % 2 == 0 else "listener", str(h).strip()))
            # the utterance answered is the last one by the speaker (user)
            last = max((j for j, (_, role, _) in enumerate(lines) if role.lower() in ("speaker", "user", "human")), default=len(lines) - 1)
            idx, _, text = lines[last]
            history = [{"speaker": role, "text": txt} for _, role, txt in lines[:last]]
            name = f"dia{dia_num}utt{idx}"
            meta: dict[str, Any] = {"conversation_id": cid}
            for k in ("topic", "speaker_profile", "listener_profile"):
                if conv.get(k):
                    meta[k] = conv[k]
            if split:
                meta["split"] = split
            yield AffectSample(
                id=f"{cid}_t{t}", source=ctx.spec.name, task="erg",
                video=ctx.locator.by_name(f"video/{name}", name, f"{split or 'train'}/video/{name}"),
                audio=None, transcript=text, history=history, emotion=emotion_label(coe.get("emotion")),
                response=response, chain_of_empathy=coe or None, meta=meta,
                candidates={"mer": _avamerg_options(emotion_label(coe.get("emotion")))},
            )


def _avamerg_options(emotion: str | None) -> list[str]:
    """The speaker-emotion options; a gold word outside EmpatheticDialogues' 32 is offered too."""
    return list(AVAMERG_EMOTIONS) + ([emotion] if emotion and emotion not in AVAMERG_EMOTIONS else [])
