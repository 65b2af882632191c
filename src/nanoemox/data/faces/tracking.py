"""One face track per clip: the largest face is found in an anchor frame, then followed frame to
frame inside a small window around its last position (see `track_faces`).

Following is cheap by default (`follow="match"`): the anchor's face, in grey and scaled to about
`TEMPLATE_SIDE` pixels, is matched by normalised cross-correlation inside a window around the
last position in the next frame (a fraction of a millisecond, against 1-2 ms for a cascade search
even in that window). Only where the match is weak (below `MATCH_MIN`: the face turned, changed
size, was covered or left) does the detector search that window, and a face it finds becomes the
template from then on. `follow="detect"` runs the detector in every frame instead (the reference
the tests compare the matched track with).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .boxes import FaceBox, iou, shrink

TEMPLATE_SIDE = 40  # face side (px) in the matching image: enough detail to tell faces apart, cheap
MATCH_MIN = 0.7  # normalised cross-correlation of the same face in the next sampled frame is ~0.9+
NEAR = 4  # px in the matching image: searched first around the last position (`_Template._near`)
FOLLOW_MODES = ("match", "detect")
# Anchor search in matching mode (`_anchor_across`), cheapest first. Faces of at least half the
# short side (a talking head) are searched coarsely (~0.4 ms on 160 px frames: a search image of
# ~48 px), in the first `DENSE_AFTER` candidates. A large face the cascade detects only weakly (a
# wide-eyed fearful one) is missed there; the same size range is then scanned densely in the first
# candidate (`DENSE_DIV`, see `HaarFaceDetector.dense_window`): ~1.5 ms, where the coarse level
# in the other candidates and then the third- and quarter-of-the-side levels across all of them
# took ~10 ms. The other candidates get the coarse level, then smaller faces are searched frame by
# frame: a third, a sixth of the side (`FINE_DIVS`, on frames large enough), the full range.
COARSE_DIV = 2.0
DENSE_AFTER = 2
DENSE_DIV = 2.0
FINE_DIVS = (3.0, 6.0)


def track_faces(images: Sequence[np.ndarray], detector, max_full: int = 4, follow: str = "match") -> list[FaceBox | None]:
    """One face track over a frame sequence (see the module docstring): returns a box or None
    per image.

    Anchor: frames are tried in the order middle, first quarter, third quarter, then nearest the
    middle (at most `max_full` of them), each searched coarse to fine (`_anchor_search`). The
    anchor is the largest face found. From it the face is followed both ways, each frame
    searched only in a window around the last tracked position: by template matching with the
    detector as fallback (`follow="match"`) or by the detector alone (`"detect"`)."""
    if follow not in FOLLOW_MODES:
        raise ValueError(f"follow must be one of {', '.join(FOLLOW_MODES)}, got {follow!r}")
    n = len(images)
    boxes: list[FaceBox | None] = [None] * n
    if n == 0:
        return boxes
    mid = (n - 1) // 2
    order: list[int] = []
    for i in [mid, (n - 1) // 4, (3 * (n - 1) + 3) // 4] + sorted(range(n), key=lambda i: (abs(i - mid), i)):
        if i not in order:
            order.append(i)
    candidates = order[: max(1, max_full)]
    if follow == "match":
        anchor, found = _anchor_across(images, candidates, detector)
    else:
        anchor, found = None, None
        for i in candidates:
            found = _anchor_search(images[i], detector)
            if found is not None:
                anchor = i
                break
    if anchor is None:
        return boxes
    boxes[anchor] = found
    for direction in (1, -1):
        ref = boxes[anchor]
        template = _Template(images[anchor], ref) if follow == "match" else None
        i = anchor + direction
        while 0 <= i < n:
            b = template.find(images[i], ref) if template is not None else None
            if b is None:
                b = _redetect(images[i], ref, detector)
                if b is not None and template is not None:
                    template = _Template(images[i], b)
            if b is not None:
                boxes[i] = b
                ref = b
            i += direction
    return boxes


class _Template:
    """A face's grey patch at a small scale, found again by normalised cross-correlation."""

    def __init__(self, img: np.ndarray, box: FaceBox):
        H, W = img.shape[:2]
        self.box = box
        self.scale = min(1.0, TEMPLATE_SIDE / float(max(box.w, box.h, 1)))
        x0, y0 = min(max(box.x, 0), W - 1), min(max(box.y, 0), H - 1)
        x1, y1 = max(min(box.x + box.w, W), x0 + 1), max(min(box.y + box.h, H), y0 + 1)
        self.offset = (x0 - box.x, y0 - box.y)  # where the patch starts inside the box
        self.patch = _grey(img, x0, y0, x1, y1, self.scale)

    def find(self, img: np.ndarray, ref: FaceBox) -> FaceBox | None:
        """The face in a window of 3x its size around `ref` (the detector's window), or None when
        the best match is weak."""
        x0, y0, x1, y1 = _window(img, ref)
        ph, pw = self.patch.shape
        if ph < 8 or pw < 8 or x1 - x0 <= 0 or y1 - y0 <= 0:
            return None
        window = _grey(img, x0, y0, x1, y1, self.scale)
        if window.shape[0] < ph or window.shape[1] < pw:
            return None
        found = self._near(window, (ref.x + self.offset[0] - x0) * self.scale, (ref.y + self.offset[1] - y0) * self.scale)
        if found is None:
            found = _best_match(window, self.patch)
        best, mx, my = found
        if not best >= MATCH_MIN:  # also rejects NaN (a flat window)
            return None
        bx = x0 + mx / self.scale - self.offset[0]
        by = y0 + my / self.scale - self.offset[1]
        return FaceBox(int(round(bx)), int(round(by)), self.box.w, self.box.h, self.box.score)


    def _near(self, window: np.ndarray, px: float, py: float) -> tuple[float, int, int] | None:
        """The best match within `NEAR` pixels of the last position (px, py) in the window, when
        it is a peak of the whole window's scores: strong, and inside that neighbourhood or at the
        window's own edge (a face moves little between sampled frames; half the cost of matching
        the whole window). None otherwise: the caller matches the whole window."""
        ph, pw = self.patch.shape
        H, W = window.shape
        sx0, sy0 = max(0, int(round(px)) - NEAR), max(0, int(round(py)) - NEAR)
        sx1, sy1 = min(W - pw, int(round(px)) + NEAR), min(H - ph, int(round(py)) + NEAR)
        if sx1 - sx0 < 2 or sy1 - sy0 < 2 or (sx0 == 0 and sy0 == 0 and sx1 == W - pw and sy1 == H - ph):
            return None
        best, mx, my = _best_match(window[sy0 : sy1 + ph, sx0 : sx1 + pw], self.patch)
        if not best >= MATCH_MIN:
            return None
        inner_x = (mx > 0 or sx0 == 0) and (mx < sx1 - sx0 or sx1 == W - pw)
        inner_y = (my > 0 or sy0 == 0) and (my < sy1 - sy0 or sy1 == H - ph)
        return (best, sx0 + mx, sy0 + my) if inner_x and inner_y else None


def _best_match(window: np.ndarray, patch: np.ndarray) -> tuple[float, int, int]:
    """(score, x, y) of the best normalised cross-correlation of `patch` in `window`."""
    import cv2

    score = cv2.matchTemplate(window, patch, cv2.TM_CCOEFF_NORMED)
    _, best, _, (mx, my) = cv2.minMaxLoc(score)
    return best, mx, my


def _grey(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, scale: float) -> np.ndarray:
    import cv2

    roi = img[y0:y1, x0:x1]
    grey = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY) if roi.ndim == 3 else roi
    if scale < 1.0:
        h, w = grey.shape
        grey = shrink(grey, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))))
    return grey


def _anchor_search(img: np.ndarray, detector, levels: Sequence[float] = (3.0, 6.0), fine: bool = True,
                   window: float | None = None) -> FaceBox | None:
    """The largest face in a whole frame, searched coarse to fine: faces of at least a third, then
    a sixth of the short side (`levels`; each level costs about a quarter of the next), a coarse
    hit being confirmed by a strict search around it unless its score is high (the detector's
    `confident_score`); then (when `fine`) the detector's full range. `window`: the smallest face's
    side in the search image (default: the detector's own window; larger: a denser scan)."""
    short = min(img.shape[:2])
    for div in levels:
        try:
            kw = {"scale": window * div / short} if window else {}
            coarse = detector.detect(img, min_face=short / div, **kw)
        except TypeError:  # a detector without the search-range keywords: one plain search
            break
        if coarse:
            if coarse[0].score >= getattr(detector, "confident_score", math.inf):
                return coarse[0]
            confirmed = _redetect(img, coarse[0], detector, strict=True)
            if confirmed is not None:
                return confirmed
    if not fine:
        return None
    found = detector.detect(img)
    return found[0] if found else None


def _anchor_across(images: Sequence[np.ndarray], candidates: Sequence[int], detector) -> tuple[int | None, FaceBox | None]:
    """The anchor for matching mode (order and costs: see `COARSE_DIV` above): a face of at least
    half the short side, coarse in the first two candidates, dense in the first, coarse in the
    others; then each candidate in turn, finer levels and the full range."""
    first = candidates[0]
    dense = getattr(detector, "dense_window", None)
    last_before_dense = candidates[min(DENSE_AFTER, len(candidates)) - 1]
    for i in candidates:
        found = _anchor_search(images[i], detector, levels=(COARSE_DIV,), fine=False)
        if found is not None:
            return i, found
        if i == last_before_dense and dense:
            found = _anchor_search(images[first], detector, levels=(DENSE_DIV,), fine=False, window=dense)
            if found is not None:
                return first, found
    window = getattr(detector, "window", 24)
    for i in candidates:
        # On a small frame the sixth-of-the-side level searches nearly the whole range at nearly
        # full size: the full search alone costs the same, without a second search to confirm.
        big = min(images[i].shape[:2]) / FINE_DIVS[-1] >= 1.5 * window
        found = _anchor_search(images[i], detector, levels=FINE_DIVS if big else FINE_DIVS[:-1])
        if found is not None:
            return i, found
    return None, None


def _window(img: np.ndarray, ref: FaceBox) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a window of 3x the face's side around `ref`, clipped to the image (the
    detector's own window, so matching and re-detection look at the same region)."""
    H, W = img.shape[:2]
    cx, cy = ref.center
    half = 1.5 * max(ref.w, ref.h)
    return max(0, int(cx - half)), max(0, int(cy - half)), min(W, int(cx + half)), min(H, int(cy + half))


def _redetect(img: np.ndarray, ref: FaceBox, detector, strict: bool = False) -> FaceBox | None:
    """Find the tracked face near `ref`: a search window of 3x its size, scaled so the face is
    about 52 px, faces 0.55-1.45x its size, a lower grouping threshold than a full search (the
    window already rules most false hits out) unless `strict`."""
    side = max(ref.w, ref.h)
    cx, cy = ref.center
    x0, y0, x1, y1 = _window(img, ref)
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
