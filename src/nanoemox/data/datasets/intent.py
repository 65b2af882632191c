"""MIntRec and MIntRec2.0 (multimodal intent recognition, MIR), and CREMA-D (speech emotion).

Two inputs are accepted for the intent sets:
- the chat-style JSON of the Nano-EmoX release: a list of {"messages": [{"role": "user", "content":
  utterance}, {"role": "assistant", "content": intent}], "videos": [path]};
- the datasets' official TSV files: MIntRec `season episode clip text label` (clip id
  `S05_E16_329`, video `S05_E16_329.mp4` or `raw_data/S05/E16/329.mp4`); MIntRec2.0
  `Dialogue_id Utterance_id Text Label ...` (clip id `dia15_utt0`). Out-of-scope rows (label
  `UNK`) are skipped.

CREMA-D: the release's chat JSON ({"messages": [..., {"role": "assistant", "content": "anger"}],
"audios": [path]}), or a folder of the original `1001_DFA_ANG_XX.wav` files (emotion, sentence,
actor and intensity are read from the file name).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from ...errors import DataError
from ...labels import MINTREC2_INTENTS, MINTREC_INTENTS
from ..schema import AffectSample
from .base import AUDIO_EXTS, Context, emotion_label, iter_rows, pick, read_json, register, split_from_name

CREMA_EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad")
_CREMA_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.", "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.", "TAI": "The airplane is almost full.", "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.", "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.", "ITS": "I think I've seen this before.", "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
_CREMA_INTENSITY = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_CREMA_RE = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")


def _chat_records(ctx: Context) -> Iterator[tuple[str, str, str, str]]:
    """(where, user text, assistant text, media path) from the chat-style JSON."""
    data = read_json(ctx.src)
    if isinstance(data, dict):
        data = data.get("data") or data.get("annotations") or list(data.values())
    if not isinstance(data, list):
        raise DataError(f"{ctx.src}: expected a JSON list of chat records")
    for i, rec in enumerate(data, 1):
        where = ctx.where(f"record {i}")
        if not isinstance(rec, dict):
            ctx.skip(where, "not a JSON object")
            continue
        msgs = rec.get("messages") or rec.get("conversations") or []
        user = next((m.get("content") or m.get("value") or "" for m in msgs if (m.get("role") or m.get("from")) in ("user", "human")), "")
        answer = next((m.get("content") or m.get("value") or "" for m in reversed(msgs) if (m.get("role") or m.get("from")) in ("assistant", "gpt")), "")
        media = rec.get("videos") or rec.get("audios") or rec.get("video") or rec.get("audio") or []
        if isinstance(media, str):
            media = [media]
        yield where, _strip_media_tags(str(user)), str(answer).strip(), (media[0] if media else "")


def _strip_media_tags(text: str) -> str:
    return re.sub(r"<(video|audio|image)>", "", text).strip()


def _intent_canon(label: str, intents: tuple[str, ...]) -> str | None:
    low = {i.lower(): i for i in intents}
    return low.get(label.strip().lower())


def _intent_dataset(ctx: Context, intents: tuple[str, ...], kind: str) -> Iterator[AffectSample]:
    split = split_from_name(ctx.src)
    if ctx.src.suffix.lower() == ".json" or ctx.src.suffix.lower() == ".jsonl":
        for where, text, label, path in _chat_records(ctx):
            intent = _intent_canon(label, intents)
            if intent is None:
                ctx.skip(where, f"intent {label!r} is not one of the {len(intents)} {kind} intents")
                continue
            video = ctx.locator.remap(path) if path else ""
            sid = Path(path).stem if path else f"{kind.lower()}_{where.rsplit(' ', 1)[-1]}"
            yield AffectSample(
                id=sid, source=ctx.spec.name, task="mir", video=video or None, transcript=text, intent=intent,
                candidates={"mir": list(intents)}, meta={"split": split} if split else {},
            )
        return
    # official TSV
    for where, row in iter_rows(ctx, sep="\t" if ctx.src.suffix.lower() == ".tsv" else None):
        label = pick(row, "label", "intent", "4" if kind == "MIntRec" else "3")
        text = pick(row, "text", "utterance", "3" if kind == "MIntRec" else "2")
        if kind == "MIntRec":
            season, episode, clip = pick(row, "season", "0"), pick(row, "episode", "1"), pick(row, "clip", "2")
            if not (season and episode and clip):
                ctx.skip(where, "missing season / episode / clip")
                continue
            sid = f"{season}_{episode}_{clip}"
            video = ctx.locator.by_name(sid, f"{season}/{episode}/{clip}", f"raw_data/{season}/{episode}/{clip}", f"video/{sid}")
            meta = {"season": season, "episode": episode, "clip": clip}
        else:
            dia, utt = pick(row, "dialogue_id", "dia_id", "dialogue", "0"), pick(row, "utterance_id", "utt_id", "utterance", "1")
            if not (dia and utt):
                ctx.skip(where, "missing dialogue / utterance id")
                continue
            sid = f"dia{dia}_utt{utt}"
            video = ctx.locator.by_name(sid, f"video/{sid}")
            meta = {"dialogue_id": dia, "utterance_id": utt}
            speaker = pick(row, "speaker", "speaker_name")
            if speaker:
                meta["speaker"] = speaker
        if label.upper() == "UNK":
            ctx.skip(where, "out-of-scope utterance (label UNK)")
            continue
        intent = _intent_canon(label, intents)
        if intent is None:
            ctx.skip(where, f"intent {label!r} is not one of the {len(intents)} {kind} intents")
            continue
        if split:
            meta["split"] = split
        yield AffectSample(id=sid, source=ctx.spec.name, task="mir", video=video, transcript=text, intent=intent, candidates={"mir": list(intents)}, meta=meta)


@register(
    "mintrec",
    description="MIntRec (20 intents): Nano-EmoX chat JSON (messages + videos) or the official train/dev/test.tsv",
    task="mir",
    dataset_dirs=("MIntRec",),
    aliases=("mintrec1",),
)
def mintrec(ctx: Context):
    return _intent_dataset(ctx, MINTREC_INTENTS, "MIntRec")


@register(
    "mintrec2",
    description="MIntRec2.0 (30 intents): Nano-EmoX chat JSON or the official TSV (Dialogue_id, Utterance_id, Text, Label); UNK skipped",
    task="mir",
    dataset_dirs=("MIntRec2", "MIntRec2.0", "MIntRec-2.0"),
    aliases=("mintrec2.0", "mintrec-2.0"),
)
def mintrec2(ctx: Context):
    return _intent_dataset(ctx, MINTREC2_INTENTS, "MIntRec2.0")


@register(
    "crema_d",
    description="CREMA-D speech emotion (6 classes): Nano-EmoX chat JSON (messages + audios) or a folder of 1001_DFA_ANG_XX.wav files",
    task="mer",
    dataset_dirs=("crema_d", "CREMA-D", "cremad", "crema-d"),
    media="audio",
    aliases=("cremad", "crema-d", "crema"),
)
def crema_d(ctx: Context):
    if ctx.src.is_dir():
        files = sorted(p for p in ctx.src.rglob("*") if p.suffix.lower() in AUDIO_EXTS + (".flv", ".mp4"))
        for p in files:
            s = _crema_sample(ctx, p.name, None, str(p), f"{p.name}")
            if s is not None:
                yield s
        return
    split = split_from_name(ctx.src)
    for where, _text, label, path in _chat_records(ctx):
        s = _crema_sample(ctx, Path(path).name if path else "", label, ctx.locator.remap(path) if path else None, where)
        if s is not None:
            if split:
                s.meta["split"] = split
            yield s


def _crema_sample(ctx: Context, name: str, label: str | None, path: str | None, where: str) -> AffectSample | None:
    m = _CREMA_RE.search(name)
    emo = emotion_label(label) if label else (_CREMA_CODES.get(m.group(3)) if m else None)
    if emo not in CREMA_EMOTIONS:
        ctx.skip(where, f"emotion {label or name!r} is not one of the 6 CREMA-D emotions")
        return None
    meta: dict = {}
    if label:
        meta["label"] = label
    if m:
        actor, sentence, code, level = m.groups()
        meta.update(actor=actor, sentence_code=sentence, sentence=_CREMA_SENTENCES.get(sentence, ""), intensity=_CREMA_INTENSITY.get(level, level))
        if _CREMA_CODES.get(code) not in (None, emo):
            meta["filename_emotion"] = _CREMA_CODES.get(code)
    sid = Path(name).stem if name else where
    sid = _CREMA_RE.search(sid).group(0) if _CREMA_RE.search(sid) else sid
    return AffectSample(id=sid, source=ctx.spec.name, task="mer", audio=path or None, emotion=emo, candidates={"mer": list(CREMA_EMOTIONS)}, meta=meta)
