"""OpenCV's frontal-face Haar cascade: the default detector, always available."""
from __future__ import annotations

import os
import threading

import numpy as np

from ...errors import ConfigError
from .boxes import FaceBox, check_image, finalize, search_scale


class HaarFaceDetector:
    """OpenCV Haar cascade (`haarcascade_frontalface_default.xml` from `cv2.data.haarcascades`).

    Robust defaults: grey image without histogram equalisation (equalisation hurts on frames with
    large flat areas), scale step 1.1, 5 neighbours, faces at least a 14th of the short side
    (`min_face`), search image at most `max_side` pixels long; weak secondary hits (below
    `rel_score` x the best level weight) and nested duplicates are dropped.
    """

    name = "haar"
    window = 24
    confident_score = 5.0  # level weight above which a hit needs no second look (false hits score ~1-3.5)
    # OpenCV scans every second position at pyramid factors below 2 and every position above:
    # searching with the smallest face at this many pixels (> 2 x `window`) scans densely, which
    # finds faces the cascade responds to only weakly (`tracking.DENSE_DIV`).
    dense_window = 49

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        max_side: int = 640,
        rel_score: float = 0.35,
    ) -> None:
        import cv2

        path = cascade if os.path.isabs(cascade) else os.path.join(cv2.data.haarcascades, cascade)
        clf = cv2.CascadeClassifier(path)
        if clf.empty():
            raise ConfigError(f"cannot load the Haar cascade {path}")
        self._cv2 = cv2
        self._clf = clf
        self._lock = threading.Lock()  # a CascadeClassifier is not safe to share between threads
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_side = max_side
        self.rel_score = rel_score

    def detect(
        self,
        rgb: np.ndarray,
        *,
        min_face: float | None = None,
        max_face: float | None = None,
        min_neighbors: int | None = None,
        scale_factor: float | None = None,
        max_upscale: float = 1.0,
        scale: float | None = None,
    ) -> list[FaceBox]:
        """Faces in an RGB image, largest first. `min_face` / `max_face`: face size range in
        input pixels (default: from a 14th of the short side up); `min_neighbors` / `scale_factor`
        override the cascade's grouping threshold and pyramid step; `max_upscale` lets a small
        image be enlarged so that `min_face` reaches the cascade window; `scale` fixes the search
        image's scale instead (faces smaller than the window at that scale are not found)."""
        cv2 = self._cv2
        rgb = check_image(rgb)
        h, w = rgb.shape[:2]
        if min(h, w) < 12:
            return []
        if scale is not None:
            min_face = float(min_face) if min_face is not None else self.window / scale
        else:
            scale, min_face = search_scale((h, w), min_face, self.window, self.max_side, max_upscale)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        min_px = max(20, int(round(min_face * scale)))
        if min_px > min(grey.shape):
            return []
        neighbors = self.min_neighbors if min_neighbors is None else int(min_neighbors)
        step = self.scale_factor if scale_factor is None else float(scale_factor)
        kwargs = dict(scaleFactor=step, minNeighbors=neighbors, minSize=(min_px, min_px), outputRejectLevels=True)
        if max_face is not None:
            max_px = max(min_px + 1, int(round(max_face * scale)))
            kwargs["maxSize"] = (max_px, max_px)
        with self._lock:
            rects, _levels, weights = self._clf.detectMultiScale3(grey, **kwargs)
        boxes = []
        for (x, y, bw, bh), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            boxes.append(
                FaceBox(int(round(x / scale)), int(round(y / scale)), int(round(bw / scale)), int(round(bh / scale)), float(wt))
            )
        return finalize(boxes, self.rel_score)
