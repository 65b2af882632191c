"""The MER family (Chinese TV clips named `sample_00000023`): MER2023 / MER2024 discrete labels,
OV-MERD and MER-Caption+ open-vocabulary labels and descriptions, MERR fine-grained rationales,
EMER gold rationales.

CSV formats (one row per clip, header row, columns matched case-insensitively):
- `name` (or `names`): the clip name; the video is `<media-root>/<name>.<ext>` (any layout below
  the root is found through the index);
- `discrete` / `emotion(s)` / `label`: one emotion (MER2023/2024: neutral angry happy sad worried
  surprise); `valence` is kept in meta;
- `openset` / `ov_labels`: open-vocabulary words, as a list literal "['happy', 'excited']" or a
  comma-separated string;
- `reason` / `reasons` / `description` / `caption`: the rationale;
- `english` / `subtitle(s)` / `text`: the transcript (`chinese` goes to meta, or to the transcript
  when there is no English one).
A folder SRC merges every CSV inside by `name` (e.g. MER2024's label-disdim.csv +
label-transcription.csv). MER2023's `label-6way.npz` (`*_corpus` dicts of {name: {emo, val}}) is
read too.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from ...errors import DataError
from ..schema import AffectSample
from .base import Context, emotion_label, has_column, parse_label_list, pick, read_json, read_table, register, split_from_name

MER_EMOTIONS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
_MER_DIRS = ("MER2023", "MER2024", "MER2025", "MER", "OV-MERD", "OVMERD", "MER-Caption", "MERCaption", "MERR", "EMER")


def _mer_rows(ctx: Context) -> list[tuple[str, dict[str, str]]]:
    """(where, merged row) per clip name, from a CSV/XLSX file, a folder of them, or an npz."""
    src = ctx.src
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".csv", ".tsv", ".xlsx", ".npz")) if src.is_dir() else [src]
    if not files:
        raise DataError(f"{src}: no CSV / XLSX / NPZ annotation files inside")
    merged: dict[str, dict[str, str]] = {}
    where: dict[str, str] = {}
    for f in files:
        if f.suffix.lower() == ".npz":
            rows = _npz_rows(f)
        else:
            rows = read_table(f)
            if rows and not has_column(rows, "name", "names", "video_name", "id"):
                ctx.skip(f.name, "no 'name' column: not a MER label table")
                continue
        for i, row in enumerate(rows, 1):
            name = pick(row, "name", "names", "video_name", "id")
            if not name:
                ctx.skip(f"{f.name}:row {i}", "no clip name")
                continue
            name = Path(name).stem if Path(name).suffix.lower() in (".mp4", ".avi", ".mkv", ".wav") else name
            tgt = merged.setdefault(name, {})
            for k, v in row.items():
                if v != "" and k not in tgt:
                    tgt[k] = v
            where.setdefault(name, f"{f.name}:row {i}")
    return [(where[n], {**r, "name": n}) for n, r in merged.items()]


def _npz_rows(path: Path) -> list[dict[str, str]]:
    import numpy as np

    try:
        data = np.load(path, allow_pickle=True)
    except Exception as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    rows = []
    for key in data.files:
        if not key.endswith("corpus"):
            continue
        corpus = data[key].tolist()
        split = key.replace("_corpus", "")
        for name, lab in corpus.items():
            row = {"name": str(name), "split": split}
            if isinstance(lab, dict):
                if lab.get("emo") is not None:
                    row["discrete"] = str(lab["emo"])
                if lab.get("val") is not None:
                    row["valence"] = str(lab["val"])
            rows.append(row)
    return rows


def _mer_sample(ctx: Context, where: str, row: dict[str, str], default_task: str | None) -> AffectSample | None:
    name = row["name"]
    emotion = emotion_label(pick(row, "discrete", "emotion", "emotions", "label", "emo"))
    ov = parse_label_list(pick(row, "openset", "open_set", "ov_labels", "ovlabels", "openset_english", "english_openset"))
    reason = pick(row, "reason", "reasons", "description", "caption", "english_reason", "reason_english") or None
    english = pick(row, "english", "subtitle", "subtitles", "text", "transcript", "english_subtitle")
    chinese = pick(row, "chinese", "chinese_subtitle")
    meta = {}
    if chinese and english:
        meta["transcript_zh"] = chinese
    valence = pick(row, "valence", "val")
    if valence:
        try:
            meta["valence"] = float(valence)
        except ValueError:
            meta["valence"] = valence
    split = row.get("split") or split_from_name(ctx.src)
    if split:
        meta["split"] = split
    present = [t for t, ok in (("mer", emotion), ("ovmer", ov), ("eri", reason)) if ok]
    if not present:
        ctx.skip(where, "no emotion, open-vocabulary labels or reason")
        return None
    task = default_task if default_task in present and len(present) == 1 else (present[0] if len(present) == 1 else None)
    cands = {"mer": list(MER_EMOTIONS)} if emotion in MER_EMOTIONS and (task in (None, "mer")) else {}
    return AffectSample(
        id=name, source=ctx.spec.name, task=task, video=ctx.locator.by_name(name, f"video/{name}"),
        transcript=english or chinese, emotion=emotion, ov_labels=ov, reason=reason, candidates=cands, meta=meta,
    )


def _mer_family(ctx: Context, task: str) -> Iterator[AffectSample]:
    for where, row in _mer_rows(ctx):
        s = _mer_sample(ctx, where, row, task)
        if s is not None:
            yield s


@register("mer2023", description="MER2023 discrete labels (CSV name,discrete[,valence] or label-6way.npz)", task="mer", dataset_dirs=_MER_DIRS)
def mer2023(ctx: Context):
    return _mer_family(ctx, "mer")


@register("mer2024", description="MER2024 labels (label-disdim.csv: name,discrete,valence; a folder also merges label-transcription.csv)", task="mer", dataset_dirs=_MER_DIRS)
def mer2024(ctx: Context):
    return _mer_family(ctx, "mer")


@register("ovmerd", description="OV-MERD open-vocabulary labels (CSV name,openset[,reason])", task="ovmer", dataset_dirs=_MER_DIRS, aliases=("ov-merd", "ov_merd"))
def ovmerd(ctx: Context):
    return _mer_family(ctx, "ovmer")


@register(
    "mercaption",
    description="MER-Caption+ descriptions and open-vocabulary labels (CSV name,reason[,openset])",
    task="eri",
    dataset_dirs=_MER_DIRS,
    aliases=("mer-caption+", "mercaption+", "mer_caption", "mer-caption", "mercaptionplus"),
)
def mercaption(ctx: Context):
    return _mer_family(ctx, "eri")


# --- MERR fine-grained --------------------------------------------------------------------------
@register(
    "merr",
    description="MERR fine-grained (JSON name -> AU list, visual/audio cues, pseudo emotion, text, reason caption)",
    task="eri",
    dataset_dirs=_MER_DIRS,
    aliases=("merr_fine", "merr-fine", "merr_fine_grained"),
)
def merr(ctx: Context):
    data = read_json(ctx.src)
    if isinstance(data, list):  # tolerate a list of {"name": ..., ...}
        data = {str(d.get("name") or d.get("id") or i): d for i, d in enumerate(data)}
    if not isinstance(data, dict):
        raise DataError(f"{ctx.src}: expected a JSON object keyed by clip name")
    for name, rec in data.items():
        where = f"{ctx.src.name}:{name}"
        if not isinstance(rec, dict):
            ctx.skip(where, "not a JSON object")
            continue
        reason = str(rec.get("smp_reason_caption") or rec.get("reason_caption") or rec.get("reason") or "").strip()
        emotion = emotion_label(rec.get("pseu_emotion") or rec.get("emotion"))
        if not reason and not emotion:
            ctx.skip(where, "no reason caption and no emotion")
            continue
        visual = [str(v).strip() for v in (rec.get("visual_prior_list") or []) if str(v).strip()]
        audio_prior = rec.get("audio_prior_list") or []
        audio = [audio_prior] if isinstance(audio_prior, str) else list(audio_prior)
        audio = [re.sub(r"^(and|but)\s+", "", str(a).strip()).rstrip(".") for a in audio if str(a).strip()]
        clues = {k: v for k, v in (("face", visual), ("voice", audio)) if v}
        meta = {k: rec[k] for k in ("AU_list", "peak_index", "peak_AU_list") if k in rec}
        yield AffectSample(
            id=str(name), source=ctx.spec.name, task="eri" if reason else "mer", video=ctx.locator.by_name(str(name), f"video/{name}"),
            transcript=str(rec.get("text") or "").strip(), emotion=emotion, reason=reason or None, clues=clues, meta=meta,
        )


# --- EMER ------------------------------------------------------------------------------------------
@register(
    "emer",
    description="EMER gold rationales (gt-eng.csv: names,emotions,subtitles,reasons; gt.csv: names,chi_reasons)",
    task="eri",
    dataset_dirs=_MER_DIRS,
)
def emer(ctx: Context):
    src = ctx.src
    if src.is_dir():
        src = next((p for p in (src / "gt-eng.csv", src / "gt.csv", src / "gt-chi.csv") if p.exists()), None)
        if src is None:
            raise DataError(f"{ctx.src}: no gt-eng.csv / gt.csv inside")
    rows = read_table(src)
    chinese: dict[str, str] = {}
    for sib in ("gt.csv", "gt-chi.csv"):
        p = src.parent / sib
        if p.exists() and p != src:
            chinese.update({pick(r, "names", "name"): pick(r, "chi_reasons", "reasons", "reason") for r in read_table(p)})
    for i, row in enumerate(rows, 1):
        where = f"{src.name}:row {i}"
        name = pick(row, "names", "name")
        if not name:
            ctx.skip(where, "no clip name")
            continue
        reason = pick(row, "reasons", "reason", "eng_reasons", "chi_reasons")
        if not reason:
            ctx.skip(where, "no reason")
            continue
        meta = {}
        zh = chinese.get(name)
        if zh and zh != reason:
            meta["reason_zh"] = zh
        if pick(row, "chi_reasons") and not pick(row, "reasons", "reason"):
            meta["language"] = "zh"
        yield AffectSample(
            id=name, source=ctx.spec.name, task="eri", video=ctx.locator.by_name(name, f"video/{name}"),
            transcript=pick(row, "subtitles", "subtitle", "english"), emotion=emotion_label(pick(row, "emotions", "emotion")),
            reason=reason, meta=meta,
        )
