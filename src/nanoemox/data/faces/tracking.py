"""One face track per clip: the largest face is found in a few anchor frames, then followed frame
to frame inside a small window around its last position (see `track_faces`)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .boxes import FaceBox, iou


def track_faces(images: Sequence[np.ndarray], detector, max_full: int = 4) -> list[FaceBox | None]:
    """One face track over a frame sequence (see the module docstring): returns a box or None
    per image.

    Anchor: frames are tried in the order middle, first quarter, third quarter, then nearest the
    middle (at most `max_full` of them), each searched coarse to fine (`_anchor_search`). The
    anchor is the largest face found. From it the face is followed both ways, each frame
    searched only in a window around the last tracked position."""
    n = len(images)
    boxes: list[FaceBox | None] = [None] * n
    if n == 0:
        return boxes
    mid = (n - 1) // 2
    order: list[int] = []
    for i in [mid, (n - 1) // 4, (3 * (n - 1) + 3) // 4] + sorted(range(n), key=lambda i: (abs(i - mid), i)):
        if i not in order:
            order.append(i)
    anchor = None
    for i in order[: max(1, max_full)]:
        found = _anchor_search(images[i], detector)
        if found is not None:
            anchor = i
            boxes[i] = found
            break
    if anchor is None:
        return boxes
    for direction in (1, -1):
        ref = boxes[anchor]
        i = anchor + direction
        while 0 <= i < n:
            b = _redetect(images[i], ref, detector)
            if b is not None:
                boxes[i] = b
                ref = b
            i += direction
    return boxes


def _anchor_search(img: np.ndarray, detector) -> FaceBox | None:
    """The largest face in a whole frame, searched coarse to fine: faces of at least a third, then
    a sixth of the short side (each level costs about a quarter of the next), a coarse hit being
    confirmed by a strict search around it unless its score is high (the detector's
    `confident_score`); then the detector's full range."""
    short = min(img.shape[:2])
    for div in (3.0, 6.0):
        try:
            coarse = detector.detect(img, min_face=short / div)
        except TypeError:  # a detector without the search-range keywords: one plain search
            break
        if coarse:
            if coarse[0].score >= getattr(detector, "confident_score", math.inf):
                return coarse[0]
            confirmed = _redetect(img, coarse[0], detector, strict=True)
            if confirmed is not None:
                return confirmed
    found = detector.detect(img)
    return found[0] if found else None


def _redetect(img: np.ndarray, ref: FaceBox, detector, strict: bool = False) -> FaceBox | None:
    """Find the tracked face near `ref`: a search window of 3x its size, scaled so the face is
    about 52 px, faces 0.55-1.45x its size, a lower grouping threshold than a full search (the
    window already rules most false hits out) unless `strict`."""
    H, W = img.shape[:2]
    side = max(ref.w, ref.h)
    cx, cy = ref.center
    half = 1.5 * side
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(W, int(cx + half)), min(H, int(cy + half))
    if x1 - x0 < 12 or y1 - y0 < 12:
        return None
    roi = img[y0:y1, x0:x1]
    try:
        found = detector.detect(roi, min_face=0.55 * side, max_face=1.45 * side, min_neighbors=5 if strict else 3, scale_factor=1.1,
                                scale=min(2.0, 52.0 / side))  # the tracked face at ~52 px
    except TypeError:  # a detector without the search-range keywords
        found = detector.detect(roi)
    if not found:
        return None
    found = [b.shifted(x0, y0) for b in found]

    def closeness(b: FaceBox) -> float:
        bx, by = b.center
        return math.hypot(bx - cx, by - cy) / side - iou(b, ref)

    return min(found, key=closeness)
