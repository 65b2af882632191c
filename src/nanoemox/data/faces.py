"""Face detection and face crops.

Two detectors share one interface (`FaceDetector.detect(rgb) -> boxes, largest first`):

- `HaarFaceDetector` (default, "haar"): OpenCV's frontal-face Haar cascade. Always available.
- `MTCNNFaceDetector` ("mtcnn"): the MTCNN P/R/O-nets whose weights ship inside the
  `facenet-pytorch==2.6.0` wheel (install it with `pip install --no-deps facenet-pytorch==2.6.0`).
  Only the three weight files are read; the detection pipeline (pyramid, NMS, box regression) is
  implemented here in torch, so neither facenet_pytorch's Python code nor torchvision is imported.

Both detectors work on a downscaled copy of the image (the smallest face searched for maps onto
the detector's native window), and map the boxes back to the input's pixel coordinates.
`min_face` / `max_face` (input pixels) narrow the search; `media.py` uses them to re-find a tracked
face cheaply inside a small region around its previous position.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = [
    "FaceBox",
    "FaceDetector",
    "HaarFaceDetector",
    "MTCNNFaceDetector",
    "get_detector",
    "crop_face",
    "square_box",
    "iou",
    "DETECTORS",
]


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


def _check_image(rgb: np.ndarray) -> np.ndarray:
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


def _finalize(boxes: Sequence[FaceBox], rel_score: float) -> list[FaceBox]:
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


def _search_scale(shape: tuple[int, int], min_face: float | None, window: int, max_side: int, max_upscale: float = 1.0) -> tuple[float, float]:
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
        rgb = _check_image(rgb)
        h, w = rgb.shape[:2]
        if min(h, w) < 12:
            return []
        if scale is not None:
            min_face = float(min_face) if min_face is not None else self.window / scale
        else:
            scale, min_face = _search_scale((h, w), min_face, self.window, self.max_side, max_upscale)
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
        return _finalize(boxes, self.rel_score)


# --- MTCNN -------------------------------------------------------------------------------------
def _mtcnn_weights_dir() -> str | None:
    spec = importlib.util.find_spec("facenet_pytorch")  # locate only: the package itself is never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    d = os.path.join(list(spec.submodule_search_locations)[0], "data")
    ok = all(os.path.isfile(os.path.join(d, f"{n}.pt")) for n in ("pnet", "rnet", "onet"))
    return d if ok else None


def _nms(boxes, scores, threshold: float, mode: str = "union"):
    """Greedy non-maximum suppression in torch; boxes (N,4) x0,y0,x1,y1. Returns kept indices."""
    import torch

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    x0, y0, x1, y1 = boxes.unbind(1)
    area = (x1 - x0 + 1).clamp(min=0) * (y1 - y0 + 1).clamp(min=0)
    order = torch.argsort(scores, descending=True)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        if order.numel() == 1:
            break
        rest = order[1:]
        w = (torch.minimum(x1[i], x1[rest]) - torch.maximum(x0[i], x0[rest]) + 1).clamp(min=0)
        h = (torch.minimum(y1[i], y1[rest]) - torch.maximum(y0[i], y0[rest]) + 1).clamp(min=0)
        inter = w * h
        if mode == "min":
            ov = inter / torch.minimum(area[i], area[rest]).clamp(min=1e-6)
        else:
            ov = inter / (area[i] + area[rest] - inter).clamp(min=1e-6)
        order = rest[ov <= threshold]
    return torch.as_tensor(keep, dtype=torch.long)


def _build_mtcnn_nets(weights_dir: str):
    import torch
    from torch import nn

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
            self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
            self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
            return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
            self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
            self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
            return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)

    nets = []
    for cls, name in ((PNet, "pnet"), (RNet, "rnet"), (ONet, "onet")):
        net = cls()
        state = torch.load(os.path.join(weights_dir, f"{name}.pt"), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        nets.append(net)
    return tuple(nets)


class MTCNNFaceDetector:
    """MTCNN (Zhang et al. 2016) with the weights from the facenet-pytorch 2.6.0 wheel.

    Raises `ConfigError` when that wheel is not installed. Same `detect(rgb, min_face=, max_face=)`
    interface as the Haar detector; scores are face probabilities.
    """

    name = "mtcnn"
    window = 12
    confident_score = 0.999

    def __init__(self, thresholds: Sequence[float] = (0.6, 0.7, 0.8), factor: float = 0.709, max_side: int = 640, rel_score: float = 0.0) -> None:
        weights = _mtcnn_weights_dir()
        if weights is None:
            raise ConfigError(
                "the MTCNN face detector needs the facenet-pytorch weights: "
                "pip install --no-deps facenet-pytorch==2.6.0 (or use detector 'haar')"
            )
        self.pnet, self.rnet, self.onet = _build_mtcnn_nets(weights)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = factor
        self.max_side = max_side
        self.rel_score = rel_score
        self._lock = threading.Lock()

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
        import torch

        rgb = _check_image(rgb)
        h, w = rgb.shape[:2]
        if min(h, w) < 12:
            return []
        # Downscale so the image is at most max_side long and the smallest face is >= 20 px.
        if min_face is None:
            min_face = max(20.0, min(h, w) / 14.0)
        pre = min(1.0, self.max_side / float(max(h, w)), 20.0 / float(min_face) if min_face > 20 else 1.0)
        img = rgb
        if pre < 1.0:
            import cv2

            img = cv2.resize(rgb, (max(1, round(w * pre)), max(1, round(h * pre))), interpolation=cv2.INTER_AREA)
        with self._lock, torch.inference_mode():
            boxes = self._run(img, min_size=max(12.0, min_face * pre), max_size=None if max_face is None else max_face * pre)
        out = [FaceBox(int(round(b[0] / pre)), int(round(b[1] / pre)), int(round((b[2] - b[0]) / pre)), int(round((b[3] - b[1]) / pre)), float(b[4])) for b in boxes]
        out = [b for b in out if b.w > 0 and b.h > 0]
        return _finalize(out, self.rel_score)

    # The three-stage cascade on one image (H,W,3 uint8). Returns rows x0,y0,x1,y1,score.
    def _run(self, img: np.ndarray, min_size: float, max_size: float | None) -> list[list[float]]:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()
        h, w = img.shape[:2]
        m = 12.0 / min_size
        minl = min(h, w) * m
        scales = []
        s = m
        while minl >= 12:
            if max_size is None or 12.0 / s <= max_size * 1.25:
                scales.append(s)
            s *= self.factor
            minl *= self.factor
        all_boxes = []
        for scale in scales:
            hs, ws = int(h * scale + 1), int(w * scale + 1)
            x = (F.interpolate(t, size=(hs, ws), mode="area") - 127.5) * 0.0078125
            reg, prob = self.pnet(x)
            prob = prob[0, 1]
            mask = prob >= self.thresholds[0]
            if not mask.any():
                continue
            idx = mask.nonzero()  # (n, 2) rows (y, x)
            score = prob[mask]
            r = reg[0][:, mask].T  # (n, 4)
            yx = idx.float()
            q1 = torch.floor((2 * yx.flip(1) + 1) / scale)
            q2 = torch.floor((2 * yx.flip(1) + 12) / scale)
            b = torch.cat([q1, q2, score[:, None], r], dim=1)
            keep = _nms(b[:, :4], b[:, 4], 0.5)
            all_boxes.append(b[keep])
        if not all_boxes:
            return []
        b = torch.cat(all_boxes)
        b = b[_nms(b[:, :4], b[:, 4], 0.7)][:400]  # best 400 candidates (noise can yield thousands)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        boxes = torch.stack([b[:, 0] + b[:, 5] * bw, b[:, 1] + b[:, 6] * bh, b[:, 2] + b[:, 7] * bw, b[:, 3] + b[:, 8] * bh, b[:, 4]], 1)
        boxes = self._square(boxes)
        for stage, size in ((1, 24), (2, 48)):
            if boxes.shape[0] == 0:
                return []
            crops = self._crops(t, boxes, size)
            if stage == 1:
                reg, prob = self.rnet(crops)
            else:
                reg, _landmarks, prob = self.onet(crops)
            score = prob[:, 1]
            ok = score > self.thresholds[stage]
            boxes, reg, score = boxes[ok], reg[ok], score[ok]
            boxes[:, 4] = score
            if stage == 1:
                keep = _nms(boxes[:, :4], score, 0.7)
                boxes, reg = boxes[keep], reg[keep]
                boxes = self._square(self._regress(boxes, reg))
            else:
                boxes = self._regress(boxes, reg)
                boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")]
        return boxes.tolist()

    @staticmethod
    def _regress(boxes, reg):
        import torch

        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        out = boxes.clone()
        out[:, :4] = boxes[:, :4] + reg * torch.stack([w, h, w, h], 1)
        return out

    @staticmethod
    def _square(boxes):
        import torch

        out = boxes.clone()
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        side = torch.maximum(w, h)
        out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
        out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
        out[:, 2] = out[:, 0] + side
        out[:, 3] = out[:, 1] + side
        return out

    @staticmethod
    def _crops(t, boxes, size: int):
        """Crops of `boxes` from the (1,3,H,W) float image resized to size x size in one batched
        bilinear resampling; outside the image reads as black (as in the original MTCNN)."""
        import torch
        import torch.nn.functional as F

        _, _, H, W = t.shape
        b = boxes[:, :4]
        x0, y0 = b[:, 0], b[:, 1]
        bw = (b[:, 2] - b[:, 0] + 1).clamp(min=1)
        bh = (b[:, 3] - b[:, 1] + 1).clamp(min=1)
        steps = (torch.arange(size, dtype=t.dtype) + 0.5) / size  # (size,)
        xs = x0[:, None] + steps[None] * bw[:, None]  # pixel-edge coordinates (n, size)
        ys = y0[:, None] + steps[None] * bh[:, None]
        xn = xs / W * 2 - 1
        yn = ys / H * 2 - 1
        n = b.shape[0]
        grid = torch.stack([xn[:, None, :].expand(n, size, size), yn[:, :, None].expand(n, size, size)], dim=-1)
        src = t.expand(n, -1, -1, -1) if n > 1 else t
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (out - 127.5) * 0.0078125


# --- factory and crops -------------------------------------------------------------------------
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


def crop_face(rgb: np.ndarray, box: FaceBox, size: int, margin: float = 0.2) -> np.ndarray:
    """A (size, size, 3) uint8 square crop around `box` (see `square_box`): never distorted,
    never padded, always inside the image."""
    import cv2

    rgb = _check_image(rgb)
    x0, y0, side = square_box(box, rgb.shape[:2], margin)
    crop = rgb[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))
