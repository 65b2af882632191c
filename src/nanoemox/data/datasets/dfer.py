"""In-the-wild facial expression sets: DFEW, CAER, FERV39k (emotion recognition, MER).

- DFEW `annotation.xlsx`: per clip (`order` 1..16372) ten annotators' votes over 7 emotions
  (`1happy 2sad 3neutral 4angry 5surprise 6disgust 7fear`) and `label` (1-7, 0 = no majority).
  The emotion is the majority vote (more than half of the votes; it agrees with `label`); clips
  without a majority are kept with no emotion and no task (`meta.majority` false), so they count
  but never train. Votes are in `meta.votes`. The fold files `EmoLabel_DataSplit/*/set_N.csv`
  (`video_name,label`) are read too. Clips: `<media-root>/.../00001.mp4` (or a frame folder
  `00001/`).
- CAER: the dataset folder `<split>/<Emotion>/<clip>.avi` (CAER-S: `.png`); the emotion comes from
  the folder name.
- FERV39k: a split list (`4_setups/All_scenes/train_All.csv`, lines `Action/Sad/0010 Sad`) or the
  dataset folder; clips are frame folders under `2_ClipsforFaceCrop/`.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..schema import BASIC_EMOTIONS, AffectSample
from .base import IMAGE_EXTS, VIDEO_EXTS, Context, basic_emotion, pick, read_table, register, split_from_name

DFEW_EMOTIONS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")  # DFEW's 1..7 order
SEVEN = tuple(BASIC_EMOTIONS)


@register(
    "dfew",
    description="DFEW votes (annotation.xlsx: 7 vote columns, order, label) or a fold file set_N.csv (video_name,label)",
    task="mer",
    dataset_dirs=("DFEW", "dfew"),
)
def dfew(ctx: Context):
    rows = read_table(ctx.src)
    if not rows:
        raise DataError(f"{ctx.src}: empty")
    vote_cols = _dfew_vote_columns(rows[0])
    split = split_from_name(ctx.src) or split_from_name(ctx.src.parent)
    for i, row in enumerate(rows, 1):
        where = f"{ctx.src.name}:row {i}"
        order = pick(row, "order", "video_name", "name", "id", "0")
        try:
            n = int(float(order))
        except ValueError:
            ctx.skip(where, f"clip id {order!r} is not a number")
            continue
        sid = f"{n:05d}"
        meta: dict = {"order": n}
        emotion = None
        if vote_cols:
            votes = {}
            for emo, col in vote_cols.items():
                try:
                    votes[emo] = int(float(row.get(col) or 0))
                except ValueError:
                    votes[emo] = 0
            total = sum(votes.values())
            best = max(votes, key=lambda e: votes[e])
            majority = total > 0 and votes[best] * 2 > total
            emotion = best if majority else None
            meta.update(votes=votes, majority=bool(majority))
            label = pick(row, "label")
            if label:
                code = int(float(label))
                meta["label"] = code
                listed = DFEW_EMOTIONS[code - 1] if 1 <= code <= 7 else None
                if listed != emotion:  # the file's own label wins; note the disagreement
                    meta["vote_majority"] = emotion
                    emotion = listed
        else:
            label = pick(row, "label", "1")
            try:
                code = int(float(label))
            except ValueError:
                code = None
            emotion = DFEW_EMOTIONS[code - 1] if code and 1 <= code <= 7 else basic_emotion(label)
            meta["label"] = label
        if split:
            meta["split"] = split
        video = ctx.locator.by_name(sid, str(n), f"Clip/original/{sid}", f"Clip/clip_224x224/{sid}", allow_dir=True, default_ext=".mp4")
        yield AffectSample(
            id=sid, source=ctx.spec.name, task="mer" if emotion else None, video=video, emotion=emotion,
            candidates={"mer": list(DFEW_EMOTIONS)} if emotion else {}, meta=meta,
        )


def _dfew_vote_columns(row: dict[str, str]) -> dict[str, str]:
    cols = {}
    for k in row:
        name = k.strip().lower().lstrip("0123456789").strip()
        emo = basic_emotion(name)
        if emo and k.strip()[:1].isdigit():
            cols[emo] = k
    return cols if len(cols) == 7 else {}


_CAER_DIRS = {
    "anger": "angry", "angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "happiness": "happy",
    "neutral": "neutral", "sad": "sad", "sadness": "sad", "surprise": "surprise",
}


@register("caer", description="CAER / CAER-S folder: <split>/<Emotion>/<clip>.avi|.png", task="mer", dataset_dirs=("CAER", "CAER-S"))
def caer(ctx: Context):
    if not ctx.src.is_dir():
        raise DataError(f"{ctx.src}: CAER is read from its folder (<split>/<Emotion>/<clip>)")
    found = 0
    for p in sorted(ctx.src.rglob("*")):
        if p.suffix.lower() not in VIDEO_EXTS + IMAGE_EXTS or p.name.startswith("."):
            continue
        emotion = _CAER_DIRS.get(p.parent.name.lower())
        rel = p.relative_to(ctx.src)
        if emotion is None:
            ctx.skip(str(rel), f"folder {p.parent.name!r} is not a CAER emotion")
            continue
        split = next((split_from_name(Path(part)) for part in rel.parts[:-2] if split_from_name(Path(part))), None)
        found += 1
        is_image = p.suffix.lower() in IMAGE_EXTS
        yield AffectSample(
            id="/".join(rel.with_suffix("").parts), source=ctx.spec.name, task="mer",
            video=None if is_image else str(p.resolve()), image=str(p.resolve()) if is_image else None,
            emotion=emotion, candidates={"mer": list(SEVEN)}, meta={"split": split} if split else {},
        )
    if not found:
        raise DataError(f"{ctx.src}: no clips found under <split>/<Emotion>/ folders")


@register(
    "ferv39k",
    description="FERV39k split list (4_setups/*/train_All.csv lines 'Scene/Emotion/0001 Emotion') or its folder; clips are frame folders",
    task="mer",
    dataset_dirs=("FERV39k", "FERV39K"),
    media="frames",
)
def ferv39k(ctx: Context):
    lists = [ctx.src]
    if ctx.src.is_dir():
        lists = sorted(ctx.src.rglob("*_All.csv")) or sorted(ctx.src.rglob("*.csv"))
        if not lists:
            raise DataError(f"{ctx.src}: no split lists (*_All.csv) inside")
    for lst in lists:
        split = split_from_name(lst)
        for i, row in enumerate(read_table(lst, header=False, sep=" " if " " in _first_line(lst) and "," not in _first_line(lst) else None), 1):
            where = f"{lst.name}:row {i}"
            cells = [v for v in row.values() if v]
            if not cells:
                continue
            if cells[0].lower() in ("path", "video", "name") or len(cells) < 1:
                continue
            rel = cells[0].strip().strip("/")
            label = cells[1] if len(cells) > 1 else ""
            parts = rel.split("/")
            emotion = basic_emotion(label) or (basic_emotion(parts[-2]) if len(parts) >= 2 else None)
            if emotion is None:
                ctx.skip(where, f"no FERV39k emotion in {cells!r}")
                continue
            meta = {"scene": parts[0]} if len(parts) >= 3 else {}
            if split:
                meta["split"] = split
            video = ctx.locator.by_name(f"2_ClipsforFaceCrop/{rel}", rel, allow_dir=True)
            yield AffectSample(
                id=rel, source=ctx.spec.name, task="mer", video=video, emotion=emotion, candidates={"mer": list(SEVEN)}, meta=meta,
            )


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline()
