"""Face detection, face crops and face tracking.

Two detectors share one interface (`FaceDetector.detect(rgb) -> boxes, largest first`):

- `HaarFaceDetector` (default, "haar", `haar.py`): OpenCV's frontal-face Haar cascade. Always
  available.
- `MTCNNFaceDetector` ("mtcnn", `mtcnn.py`): the MTCNN P/R/O-nets whose weights ship inside the
  `facenet-pytorch==2.6.0` wheel (install it with `pip install --no-deps facenet-pytorch==2.6.0`).

Both detectors work on a downscaled copy of the image (the smallest face searched for maps onto
the detector's native window), and map the boxes back to the input's pixel coordinates.
`min_face` / `max_face` (input pixels) narrow the search; `tracking.py` uses them to re-find a
tracked face cheaply inside a small region around its previous position. `boxes.py` holds the box
type and the square crops.
"""
from __future__ import annotations

import threading

from ...errors import ConfigError
from .boxes import FaceBox, FaceDetector, crop_face, iou, square_box
from .haar import HaarFaceDetector
from .mtcnn import MTCNNFaceDetector
from .tracking import track_faces

__all__ = [
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "MTCNNFaceDetector",
    "get_detector",
    "crop_face",
    "square_box",
    "iou",
    "track_faces",
    "DETECTORS",
]

DETECTORS = {"haar": HaarFaceDetector, "mtcnn": MTCNNFaceDetector}
_CACHE: dict[str, FaceDetector] = {}
_CACHE_LOCK = threading.Lock()


def get_detector(name: str = "haar") -> FaceDetector:
    """A shared detector instance by name ("haar" or "mtcnn"); `ConfigError` for unknown names."""
    key = (name or "haar").lower()
    if key not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r} (expected one of {', '.join(DETECTORS)})")
    with _CACHE_LOCK:
        det = _CACHE.get(key)
        if det is None:
            det = DETECTORS[key]()
            _CACHE[key] = det
        return det
