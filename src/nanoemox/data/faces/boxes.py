"""Face boxes, the detector interface, and the helpers both detectors share: input checks, box
merging, search scales and square crops."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np


class FaceBox(NamedTuple):
    """A face in pixel coordinates of the image it was detected in; `score` is detector-specific
    (Haar: the cascade's level weight, typically 2-12; MTCNN: a probability in [0, 1])."""

    x: int
    y: int
    w: int
    h: int
    score: float

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    def shifted(self, dx: int, dy: int) -> "FaceBox":
        return FaceBox(self.x + dx, self.y + dy, self.w, self.h, self.score)


@runtime_checkable
class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[FaceBox]:  # (H,W,3) uint8 RGB -> boxes, largest first
        ...


def check_image(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    if rgb.shape[2] == 4:
        rgb = rgb[:, :, :3]
    if rgb.dtype != np.uint8:
        if np.issubdtype(rgb.dtype, np.floating) and rgb.size and float(np.nanmax(rgb)) <= 1.0:
            rgb = rgb * 255.0
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return rgb


def iou(a: FaceBox, b: FaceBox) -> float:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def _overlap_min(a: FaceBox, b: FaceBox) -> float:
    """Intersection over the smaller box (1.0 when one box contains the other)."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    small = min(a.w * a.h, b.w * b.h)
    return inter / small if small > 0 else 0.0


def finalize(boxes: Sequence[FaceBox], rel_score: float) -> list[FaceBox]:
    """Drop weak boxes (score below `rel_score` x the best), merge duplicates, largest first."""
    if not boxes:
        return []
    best = max(b.score for b in boxes)
    kept: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if best > 0 and b.score < rel_score * best:
            continue
        if any(_overlap_min(b, k) > 0.6 for k in kept):
            continue
        kept.append(b)
    return sorted(kept, key=lambda b: (-b.area, -b.score))


def search_scale(shape: tuple[int, int], min_face: float | None, window: int, max_side: int, max_upscale: float = 1.0) -> tuple[float, float]:
    """(scale, min_face) for a search: the smallest face maps onto the detector window, the
    scaled image is at most `max_side` on its long side, and the image is upscaled by at most
    `max_upscale` (so small faces in a small search window still reach the window size)."""
    h, w = shape
    short = min(h, w)
    if min_face is None:
        min_face = max(float(window), short / 14.0)
    min_face = max(float(min_face), 1.0)
    scale = min(max(1.0, max_upscale), window / min_face, max_side / float(max(h, w)))
    return scale, min_face


def square_box(box: FaceBox, image_shape: tuple[int, int], margin: float = 0.2) -> tuple[int, int, int]:
    """(x0, y0, side): a square around `box`, enlarged by `margin` x its size on each side,
    shifted to lie inside the image, and shrunk to the image's short side when larger."""
    H, W = int(image_shape[0]), int(image_shape[1])
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    side = max(box.w, box.h) * (1.0 + 2.0 * max(0.0, margin))
    side = int(round(min(side, H, W)))
    side = max(side, 1)
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    x0 = min(max(x0, 0), W - side)
    y0 = min(max(y0, 0), H - side)
    return x0, y0, side


def shrink(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`img` resized down to `size` (width, height): area averaging by a whole power of two k
    (OpenCV's exact fast path; the last w % k columns and h % k rows are dropped, so k stays where
    that is at most 1% of the side), then the remaining factor bilinear when it is at most 1.5 and
    by area above. It looks like one area resize (about one grey level apart on SynthAffect
    frames, 2-3 on detailed photos) at a quarter of its cost on small pictures: OpenCV's area
    resize at a fractional factor costs ~55 us on a 160 px RGB picture, more than the rest of a
    frame's face work."""
    import cv2

    h, w = img.shape[:2]
    tw, th = int(size[0]), int(size[1])
    k = 1
    while w // (2 * k) >= tw and h // (2 * k) >= th and w % (2 * k) <= w // 100 and h % (2 * k) <= h // 100:
        k *= 2
    if k > 1:
        img = cv2.resize(img[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    if (w, h) == (tw, th):
        return img
    interp = cv2.INTER_LINEAR if w <= 1.5 * tw and h <= 1.5 * th else cv2.INTER_AREA
    return cv2.resize(img, (tw, th), interpolation=interp)


def crop_face(rgb: np.ndarray, box: FaceBox, size: int, margin: float = 0.2) -> np.ndarray:
    """A (size, size, 3) uint8 square crop around `box` (see `square_box`): never distorted,
    never padded, always inside the image."""
    import cv2

    rgb = check_image(rgb)
    x0, y0, side = square_box(box, rgb.shape[:2], margin)
    crop = rgb[y0 : y0 + side, x0 : x0 + side]
    if side > size:
        return np.ascontiguousarray(shrink(crop, (size, size)))
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR))


_CV_LOCK = threading.Lock()
_CV_USERS = 0
_CV_SAVED = 1


@contextmanager
def one_cv_thread() -> Iterator[None]:
    """Run OpenCV on the calling thread only inside the block. Media and face work calls OpenCV on
    small pictures (cascade searches of 48-600 px, resizes of a few hundred pixels): its thread
    team costs more CPU time than it saves there (on an idle machine its threads wait actively
    after each call). The thread count is process-wide, so nested and concurrent users share one
    count and the last one out restores the previous setting; results are the same either way."""
    import cv2

    global _CV_USERS, _CV_SAVED
    with _CV_LOCK:
        if _CV_USERS == 0:
            _CV_SAVED = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _CV_USERS += 1
    try:
        yield
    finally:
        with _CV_LOCK:
            _CV_USERS -= 1
            if _CV_USERS == 0:
                cv2.setNumThreads(_CV_SAVED)
