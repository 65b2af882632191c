"""MTCNN (Zhang et al. 2016) with the P/R/O-net weights that ship inside the facenet-pytorch 2.6.0
wheel. Only the three weight files are read; the pipeline (pyramid, NMS, box regression) is
implemented here in torch, so neither facenet_pytorch's Python code nor torchvision is imported."""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import Sequence

import numpy as np

from ...errors import ConfigError
from .boxes import FaceBox, check_image, finalize


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

        rgb = check_image(rgb)
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
        return finalize(out, self.rel_score)

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
