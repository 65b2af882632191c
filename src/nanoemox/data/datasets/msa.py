"""Sentiment analysis sets (MSA): CMU-MOSI, CMU-MOSEI, CH-SIMS and CH-SIMS v2.

All four are read from the MMSA `label.csv` layout: video_id, clip_id, text, label (the overall
score), label_T / label_A / label_V (unimodal scores, SIMS only), annotation, mode (split). Clips
are `Raw/<video_id>/<clip_id>.mp4`. MOSI / MOSEI scores are already in [-3, 3]; SIMS scores are
in [-1, 1] and are multiplied by 3 so every MSA sample shares the schema's [-3, 3] scale (the
original value stays in `meta.score_raw`). The sentiment label follows the score's sign (0 =
neutral).
"""
from __future__ import annotations

from ...errors import DataError
from ...labels import SENTIMENTS
from ..schema import AffectSample
from .base import Context, has_column, pick, read_table, register, split_from_name


def _msa(ctx: Context, scale: float, lo: float, hi: float):
    rows = read_table(ctx.src)
    if rows and not has_column(rows, "label", "score", "sentiment"):
        raise DataError(f"{ctx.src}: no label / score column (expected the MMSA label.csv layout)")
    only = ctx.options.get("split")
    for i, row in enumerate(rows, 1):
        where = f"{ctx.src.name}:row {i}"
        vid, cid = pick(row, "video_id", "video", "vid"), pick(row, "clip_id", "clip", "segment_id")
        raw = pick(row, "label", "score", "sentiment")
        if not vid:
            ctx.skip(where, "no video_id")
            continue
        try:
            score = float(raw)
        except ValueError:
            ctx.skip(where, f"score {raw!r} is not a number")
            continue
        if not lo - 1e-6 <= score <= hi + 1e-6:
            ctx.skip(where, f"score {score} outside [{lo:g}, {hi:g}]")
            continue
        split = pick(row, "mode", "split") or split_from_name(ctx.src)
        split = {"valid": "val", "dev": "val"}.get(split, split)
        if only and split != only:
            continue
        meta = {"video_id": vid, "clip_id": cid}
        if scale != 1.0:
            meta["score_raw"] = score
        for k in ("label_t", "label_a", "label_v"):
            v = pick(row, k)
            if v:
                try:
                    meta[k.replace("label_", "score_").lower()] = float(v) * scale
                except ValueError:
                    pass
        if pick(row, "annotation"):
            meta["annotation"] = pick(row, "annotation")
        if split:
            meta["split"] = split
        sid = f"{vid}_{cid}" if cid else vid
        video = ctx.locator.by_name(f"Raw/{vid}/{cid}", f"{vid}/{cid}", sid, f"video/{sid}") if cid else ctx.locator.by_name(vid, f"Raw/{vid}")
        yield AffectSample(
            id=sid, source=ctx.spec.name, task="msa", video=video, transcript=pick(row, "text", "transcript"),
            sentiment_score=round(score * scale, 4), candidates={"msa": list(SENTIMENTS)}, meta=meta,
        )


@register("mosi", description="CMU-MOSI label.csv (video_id, clip_id, text, label in [-3,3], mode)", task="msa", dataset_dirs=("MOSI", "CMU-MOSI"), aliases=("cmu-mosi", "cmumosi"))
def mosi(ctx: Context):
    return _msa(ctx, 1.0, -3.0, 3.0)


@register("mosei", description="CMU-MOSEI label.csv (video_id, clip_id, text, label in [-3,3], mode)", task="msa", dataset_dirs=("MOSEI", "CMU-MOSEI"), aliases=("cmu-mosei", "cmumosei"))
def mosei(ctx: Context):
    return _msa(ctx, 1.0, -3.0, 3.0)


@register("sims", description="CH-SIMS label.csv (label in [-1,1], scaled x3; label_T/A/V kept)", task="msa", dataset_dirs=("SIMS", "CH-SIMS"), aliases=("ch-sims", "chsims"))
def sims(ctx: Context):
    return _msa(ctx, 3.0, -1.0, 1.0)


@register("simsv2", description="CH-SIMS v2 label.csv (label in [-1,1], scaled x3)", task="msa", dataset_dirs=("SIMSv2", "SIMS-v2", "CH-SIMS-v2", "ch-sims-v2"), aliases=("ch-sims-v2", "sims-v2", "sims2", "chsimsv2"))
def simsv2(ctx: Context):
    return _msa(ctx, 3.0, -1.0, 1.0)
