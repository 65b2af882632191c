"""Face detection on real photos (skimage's astronaut, matplotlib's Grace Hopper) and on noise, and
the matched face track against a full search of every frame (SynthAffect clips, pans, a zoom, a cut)."""
from __future__ import annotations

import numpy as np
import pytest

from nanoemox.data.faces import FaceBox, FaceDetector, HaarFaceDetector, crop_face, get_detector, iou, square_box, track_faces
from nanoemox.data.faces.boxes import one_cv_thread, shrink
from nanoemox.errors import ConfigError

# Where the faces are (x0, y0, x1, y1), read off the photos.
ASTRONAUT_FACE = (170, 55, 280, 170)
HOPPER_FACE = (150, 95, 380, 335)


def _inside(box: FaceBox, region, tol: int = 25) -> bool:
    cx, cy = box.center
    x0, y0, x1, y1 = region
    return x0 - tol <= cx <= x1 + tol and y0 - tol <= cy <= y1 + tol


def _detector(name: str):
    """A detector by name. A missing MTCNN wheel fails this case loudly instead of dropping it:
    `make setup` installs facenet-pytorch==2.6.0."""
    try:
        return get_detector(name)
    except ConfigError as e:
        pytest.fail(f"face detector {name!r} unavailable: {e}")


@pytest.mark.parametrize("name", ["haar", "mtcnn"])
def test_detector_finds_the_faces_and_nothing_in_noise(name, astronaut, grace_hopper):
    det = _detector(name)
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


# --- tracking: the matched track against full detection in every frame -------------------------
class _Counting:
    """The real detector, counting its searches (its other attributes pass through)."""

    def __init__(self, det):
        self.det, self.calls = det, 0

    def __getattr__(self, name):
        return getattr(self.det, name)

    def detect(self, rgb, **kw):
        self.calls += 1
        return self.det.detect(rgb, **kw)


def _full_detection(frames, region_of=None) -> list:
    """The largest face of a whole-frame search in each frame (None where there is none, or where it
    lies outside the known face region: a false hit of the full search is not the face)."""
    det = get_detector("haar")
    out = []
    for k, f in enumerate(frames):
        found = det.detect(f)
        b = found[0] if found else None
        if b is not None and region_of is not None and not _inside(b, region_of(k)):
            b = None
        out.append(b)
    return out


def _check_track_matches_full(frames, region_of=None, min_iou: float = 0.6) -> tuple[int, int]:
    """Every face the full search finds is found by the matched track, in the same place; returns
    the searches the matched and the detect-every-frame tracks ran."""
    matched, detected = _Counting(get_detector("haar")), _Counting(get_detector("haar"))
    boxes = track_faces(frames, matched, follow="match")
    track_faces(frames, detected, follow="detect")
    full = _full_detection(frames, region_of)
    assert sum(b is not None for b in full) >= len(frames) // 2, full  # the media do show a face
    for k, (b, ref) in enumerate(zip(boxes, full)):
        if ref is not None:
            assert b is not None and iou(b, ref) >= min_iou, (k, b, ref)
    return matched.calls, detected.calls


def _pan(img: np.ndarray, step: int, n: int = 8) -> list[np.ndarray]:
    w = int(img.shape[1] * 0.8)
    return [np.ascontiguousarray(img[:, k * step : k * step + w]) for k in range(n)]


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory) -> list[list[np.ndarray]]:
    """8 sampled frames of each of 8 SynthAffect clips, decoded with PyAV."""
    import warnings

    import av

    from nanoemox.data.synth import generate_corpus

    out = tmp_path_factory.mktemp("synth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generate_corpus(out, n=8, seed=0, workers=1, progress=False)
    seqs = []
    for clip in sorted((out / "media").glob("*.mp4")):
        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        seqs.append([frames[int((k + 0.5) * len(frames) / 8)] for k in range(8)])
    assert len(seqs) == 8
    return seqs


def test_matched_track_finds_the_full_detection_faces_on_synthaffect(synth_frames):
    ratios, searches = [], []
    for frames in synth_frames:
        matched, detected = _check_track_matches_full(frames)
        ratios.append(matched / detected)
        searches.append(matched)
    # the point of matching: a fraction of the searches (typically 1 of 8 per clip)
    assert np.median(ratios) <= 0.25, ratios
    # a large face the coarse level misses (the corpus's wide-eyed fearful face) costs two coarse
    # searches, a dense scan of the middle frame and one confirming search, not the coarse and
    # finer levels across all 4 candidate frames (10 searches before)
    assert max(searches) <= 2 + 1 + 1, searches


def test_matching_near_the_last_position_gives_the_whole_window_track(monkeypatch, synth_frames, astronaut, grace_hopper):
    """The template is first matched within `NEAR` px of its last position; the track equals
    matching the whole window each time (`NEAR = 0` turns the first step off)."""
    from nanoemox.data.faces import tracking

    seqs = list(synth_frames) + [_pan(astronaut, 10), _pan(grace_hopper, 12), _pan(astronaut, 6)[::-1]]
    near = [track_faces(frames, get_detector("haar")) for frames in seqs]
    monkeypatch.setattr(tracking, "NEAR", 0)
    whole = [track_faces(frames, get_detector("haar")) for frames in seqs]
    assert near == whole
    assert sum(b is not None for t in near for b in t) >= 0.9 * sum(len(t) for t in near)


def test_shrink_looks_like_an_area_resize(astronaut, grace_hopper):
    """Area averaging by powers of two, then the rest: a few grey levels from OpenCV's single area
    resize on detailed photos (about one on SynthAffect frames), the exact size asked for. The
    sizes keep the aspect ratio, as face crops and letterboxed frames do."""
    import cv2

    for img in (astronaut, grace_hopper[44:556], astronaut[:333, 10:451]):
        h, w = img.shape[:2]
        for side in (37, 64, 112, 224, w - 1):
            size = (side, max(1, round(side * h / w)))
            out = shrink(img, size)
            ref = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            assert out.shape == ref.shape and out.dtype == np.uint8, (size, out.shape)
            d = np.abs(out.astype(int) - ref)
            assert d.mean() < 3.5 and np.percentile(d, 99) < 40, (size, d.mean(), np.percentile(d, 99))
    half = shrink(astronaut, (256, 256))  # a whole factor: a plain 2 x 2 average, halves rounded up
    sums = astronaut.astype(np.int32).reshape(256, 2, 256, 2, 3).sum(axis=(1, 3))
    assert np.array_equal(half, ((sums + 2) // 4).astype(np.uint8))


def test_one_cv_thread_restores_the_setting_and_keeps_results(astronaut):
    import threading

    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        frames = _pan(astronaut, 10)
        team = track_faces(frames, get_detector("haar"))
        with one_cv_thread():
            assert cv2.getNumThreads() == 1
            with one_cv_thread():
                assert cv2.getNumThreads() == 1
            assert cv2.getNumThreads() == 1  # the outer block still holds it
            single = track_faces(frames, get_detector("haar"))
        assert cv2.getNumThreads() == 2 and single == team

        start = threading.Barrier(4)

        def user(k: int) -> None:
            start.wait()
            for i in range(50):
                with one_cv_thread():
                    assert cv2.getNumThreads() == 1
                    if (i + k) % 7 == 0:
                        cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)

        threads = [threading.Thread(target=user, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cv2.getNumThreads() == 2  # the last one out restored it
    finally:
        cv2.setNumThreads(before)


def test_matched_track_finds_the_full_detection_faces_on_real_photos(astronaut, grace_hopper):
    import cv2

    for img, face, step in ((astronaut, ASTRONAUT_FACE, 10), (grace_hopper, HOPPER_FACE, 10)):
        x0, y0, x1, y1 = face
        _check_track_matches_full(_pan(img, step), lambda k: (x0 - k * step, y0, x1 - k * step, y1))
    # zooming in by 40% over the clip: the template stops matching and the detector takes over
    H, W = grace_hopper.shape[:2]
    zoom = []
    for k in range(8):
        z = 1 + 0.4 * k / 7
        h, w = int(H / z), int(W / z)
        zoom.append(cv2.resize(grace_hopper[(H - h) // 3 : (H - h) // 3 + h, (W - w) // 2 : (W - w) // 2 + w], (W, H)))
    _check_track_matches_full(zoom, min_iou=0.5)  # the detector's own box size wobbles while zooming


def test_matched_track_never_carries_a_face_onto_another_person(astronaut, grace_hopper):
    """A cut from the astronaut to Grace Hopper: every box is on the face of the person shown."""
    import cv2

    a, h = cv2.resize(astronaut, (400, 400)), cv2.resize(grace_hopper, (400, 400))
    frames = [a] * 3 + [h] * 5
    full = _full_detection(frames)
    for b, ref in zip(track_faces(frames, get_detector("haar"), follow="match"), full):
        assert b is None or (ref is not None and iou(b, ref) >= 0.5), (b, ref)


def test_load_media_follows_by_matching_by_default(tmp_path, astronaut):
    from mediakit import write_video

    from nanoemox.data.media import MediaConfig, load_media

    frames = np.stack([np.roll(astronaut[::2, ::2], 3 * i, axis=1) for i in range(20)])
    path = write_video(tmp_path / "pan.mp4", frames, fps=10)
    fast, slow = load_media(path), load_media(path, MediaConfig(face_follow="detect"))
    assert fast.face_mask.all() and slow.face_mask.all()
    assert min(iou(a, b) for a, b in zip(fast.face_boxes, slow.face_boxes)) >= 0.6
    with pytest.raises(ValueError, match="face_follow"):
        MediaConfig(face_follow="guess")
    with pytest.raises(ValueError, match="follow"):
        track_faces([astronaut], get_detector("haar"), follow="guess")
