"""Face detection on real photos (skimage's astronaut, matplotlib's Grace Hopper) and on noise."""
from __future__ import annotations

import numpy as np
import pytest

from nanoemox.data.faces import FaceBox, FaceDetector, HaarFaceDetector, crop_face, get_detector, iou, square_box
from nanoemox.errors import ConfigError

# Where the faces are (x0, y0, x1, y1), read off the photos.
ASTRONAUT_FACE = (170, 55, 280, 170)
HOPPER_FACE = (150, 95, 380, 335)


def _inside(box: FaceBox, region, tol: int = 25) -> bool:
    cx, cy = box.center
    x0, y0, x1, y1 = region
    return x0 - tol <= cx <= x1 + tol and y0 - tol <= cy <= y1 + tol


def _mtcnn_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("facenet_pytorch") is not None


DETECTORS = ["haar"] + (["mtcnn"] if _mtcnn_available() else [])


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_finds_the_faces_and_nothing_in_noise(name, astronaut, grace_hopper):
    det = get_detector(name)
    assert isinstance(det, FaceDetector)
    for img, region in ((astronaut, ASTRONAUT_FACE), (grace_hopper, HOPPER_FACE)):
        boxes = det.detect(img)
        assert len(boxes) >= 1
        b = boxes[0]
        assert isinstance(b, FaceBox) and b.w > 40 and b.h > 40
        assert _inside(b, region), (name, b)
        assert all(boxes[i].area >= boxes[i + 1].area for i in range(len(boxes) - 1))  # largest first
    rng = np.random.default_rng(0)
    shapes = ((480, 640, 3), (256, 256, 3), (720, 1280, 3)) if name == "haar" else ((256, 256, 3),)  # MTCNN is slow on CPU
    for shape in shapes:
        assert det.detect(rng.integers(0, 256, shape, dtype=np.uint8)) == []
    if name == "haar":
        assert det.detect(np.zeros((200, 200, 3), np.uint8)) == []
        assert det.detect(np.full((200, 200, 3), 128, np.uint8)) == []


def test_detection_maps_boxes_back_from_downscaled_search(astronaut):
    """A 4x upscaled photo is searched at a fraction of its size; boxes come back in its pixels."""
    import cv2

    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    det = get_detector("haar")
    b = det.detect(big)[0]
    x0, y0, x1, y1 = (v * 4 for v in ASTRONAUT_FACE)
    assert _inside(b, (x0, y0, x1, y1), tol=100)
    assert 300 < b.w < 700
    # the same face found in the original and in the big picture agree after scaling
    small = det.detect(astronaut)[0]
    assert iou(FaceBox(small.x * 4, small.y * 4, small.w * 4, small.h * 4, 0.0), b) > 0.5


def test_detector_accepts_grey_float_and_rgba(astronaut):
    det = get_detector("haar")
    grey = astronaut.mean(axis=2).astype(np.uint8)
    assert det.detect(grey)
    assert det.detect(astronaut.astype(np.float32) / 255.0)
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert det.detect(rgba)
    assert det.detect(np.zeros((8, 8, 3), np.uint8)) == []  # too small to hold a face


def test_search_range_narrows_the_search(astronaut):
    det = HaarFaceDetector()
    b = det.detect(astronaut)[0]
    assert det.detect(astronaut, min_face=b.w * 2) == []
    assert det.detect(astronaut, max_face=b.w * 0.5) == []
    assert det.detect(astronaut, min_face=b.w * 0.7, max_face=b.w * 1.5)


def test_crop_face_is_square_inside_and_centred(astronaut, grace_hopper):
    det = get_detector("haar")
    for img in (astronaut, grace_hopper):
        b = det.detect(img)[0]
        crop = crop_face(img, b, 112)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        assert crop.std() > 10  # a real picture, not padding
        x0, y0, side = square_box(b, img.shape[:2], 0.2)
        assert 0 <= x0 and 0 <= y0 and x0 + side <= img.shape[1] and y0 + side <= img.shape[0]
        assert side == round(max(b.w, b.h) * 1.4) or side == min(img.shape[:2])


def test_crop_face_clips_to_the_image_without_padding():
    img = np.full((100, 200, 3), 200, np.uint8)
    # a box hanging over the top-left corner: the square is shifted inside
    x0, y0, side = square_box(FaceBox(-20, -10, 60, 60, 1.0), img.shape[:2], 0.2)
    assert (x0, y0) == (0, 0) and side == 84
    # a box bigger than the image: the square shrinks to the short side
    x0, y0, side = square_box(FaceBox(10, 10, 300, 300, 1.0), img.shape[:2], 0.2)
    assert side == 100 and 0 <= x0 <= 100 and y0 == 0
    crop = crop_face(img, FaceBox(150, 60, 80, 80, 1.0), 64)
    assert crop.shape == (64, 64, 3) and int(crop.min()) == 200  # never padded with black


def test_unknown_detector_is_a_config_error():
    with pytest.raises(ConfigError):
        get_detector("yolo")


def test_get_detector_reuses_instances():
    assert get_detector("haar") is get_detector("HAAR")


def test_mtcnn_without_the_wheel_is_a_config_error(monkeypatch):
    from nanoemox.data.faces import mtcnn

    monkeypatch.setattr(mtcnn, "_mtcnn_weights_dir", lambda: None)
    with pytest.raises(ConfigError, match="facenet-pytorch"):
        mtcnn.MTCNNFaceDetector()
