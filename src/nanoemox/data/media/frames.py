"""Frames: the working resolution, letterboxing to the encoder's size, and face crops."""
from __future__ import annotations

import threading

import numpy as np

from ...errors import MediaError
from ..faces import crop_face, get_detector, track_faces
from ..faces.boxes import one_cv_thread, shrink
from .types import MediaConfig, MediaInput

_WORK_SIDE = 960  # long side of the working resolution (face detection and crops)
_SWS_THREADED_MIN_PIXELS = 320 * 240  # smaller pictures are converted on the calling thread


def to_work(frame) -> np.ndarray:
    """An av.VideoFrame or an RGB array -> RGB uint8 at most _WORK_SIDE on its long side,
    with the display rotation applied."""
    import cv2

    if isinstance(frame, np.ndarray):
        img = frame
        h, w = img.shape[:2]
        s = min(1.0, _WORK_SIDE / float(max(h, w)))
        if s < 1.0:
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)
    w, h = frame.width, frame.height
    s = min(1.0, _WORK_SIDE / float(max(w, h)))
    tw, th = max(2, int(round(w * s))), max(2, int(round(h * s)))
    ref = _reformatter()  # one per thread: keeps its swscale context between frames
    # swscale's own threads cost 3x the CPU of one on small pictures (160 px: 31 vs 10 us)
    threads = 1 if w * h < _SWS_THREADED_MIN_PIXELS else None
    if s < 1.0:  # bilinear: swscale widens the filter when shrinking
        img = ref.reformat(frame, width=tw, height=th, format="rgb24", interpolation="BILINEAR", threads=threads).to_ndarray()
    else:
        img = ref.reformat(frame, format="rgb24", threads=threads).to_ndarray()
    rot = 0
    try:
        rot = int(round((frame.rotation or 0) / 90.0)) % 4
    except Exception:
        rot = 0
    if rot:
        img = np.rot90(img, k=rot)
    return np.ascontiguousarray(img)


_TLS = threading.local()


def _reformatter():
    r = getattr(_TLS, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _TLS.reformatter = VideoReformatter()
    return r


def fit_frame(img: np.ndarray, size: int, mode: str = "letterbox") -> np.ndarray:
    """Resize an RGB image to size x size keeping its aspect ratio: letterbox (black bars) or
    centre crop."""
    import cv2

    h, w = img.shape[:2]
    if mode == "crop":
        s = size / float(min(h, w))
    else:
        s = size / float(max(h, w))
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    if (nw, nh) == (w, h):
        r = img
    elif s < 1:
        r = shrink(img, (nw, nh))
    else:
        r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if mode == "crop":
        y0, x0 = (nh - size) // 2, (nw - size) // 2
        return np.ascontiguousarray(r[y0 : y0 + size, x0 : x0 + size])
    out = np.zeros((size, size, 3), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = r
    return out


def finish_video(out: MediaInput, images: list[np.ndarray], index: list[int], cfg: MediaConfig) -> None:
    """Fill frames / faces from the unique working images and the per-slot index into them."""
    with one_cv_thread():
        _finish_video(out, images, index, cfg)


def _finish_video(out: MediaInput, images: list[np.ndarray], index: list[int], cfg: MediaConfig) -> None:
    T = len(index)
    fitted = [fit_frame(im, cfg.frame_size, cfg.frame_fit) for im in images]
    out.frames = np.stack([fitted[i] for i in index]).astype(np.uint8, copy=False)
    if not cfg.detect_faces:
        return
    boxes = track_faces(images, get_detector(cfg.detector), follow=cfg.face_follow)
    crops = [None if b is None else crop_face(images[k], b, cfg.face_size, cfg.face_margin) for k, b in enumerate(boxes)]
    faces = np.zeros((T, cfg.face_size, cfg.face_size, 3), dtype=np.uint8)
    mask = np.zeros(T, dtype=bool)
    for t, k in enumerate(index):
        if crops[k] is not None:
            faces[t] = crops[k]
            mask[t] = True
    out.faces, out.face_mask = faces, mask
    out.face_boxes = [boxes[k] for k in index]
    if not mask.any():
        out.warnings.append("no face detected in any sampled frame")

def as_uint8_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):
        a = a[..., None]  # grey
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise MediaError(where, f"frames must be (T,H,W,3) or (H,W,3), got shape {np.asarray(arr).shape}")
    if a.dtype != np.uint8:
        if a.dtype.kind == "f":
            a = np.clip(a * (255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    return a


def uniform_indices(n: int, k: int) -> np.ndarray:
    """k indices into n items at the centres of k equal segments (repeats when n < k)."""
    return np.minimum(((np.arange(k) + 0.5) * n / k).astype(int), n - 1)
