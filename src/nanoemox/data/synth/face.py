"""Procedurally drawn, animated faces with an exaggerated expression per emotion (OpenCV + numpy).

Each emotion has a fixed expression (brow raise and tilt, eye opening, mouth curve, opening and
width, plus extras such as a tear or blush at strong intensity) and the clue phrases that name
exactly those drawn features. Identity (skin, hair, size, position), head motion, background and
noise vary per sample; the mouth moves with the speech envelope.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class Expression:
    brow_raise: float = 0.0  # + up
    brow_tilt: float = 0.0  # + inner ends down (frown), - inner ends up (worry)
    brow_arch: float = 0.0  # + arched
    brow_asym: float = 0.0  # + right brow lowered
    eye_open: float = 1.0
    mouth_curve: float = 0.0  # + corners up (smile), - corners down
    mouth_open: float = 0.0  # 0..1
    mouth_width: float = 1.0
    sneer: float = 0.0  # one-sided raised upper lip (disgust)
    teeth: bool = False
    round_mouth: bool = False

    def blend(self, k: float) -> "Expression":
        """Neutral face moved a fraction k towards this expression."""
        n = NEUTRAL
        lerp = lambda a, b: a + k * (b - a)  # noqa: E731
        return Expression(
            lerp(n.brow_raise, self.brow_raise), lerp(n.brow_tilt, self.brow_tilt),
            lerp(n.brow_arch, self.brow_arch), lerp(n.brow_asym, self.brow_asym),
            lerp(n.eye_open, self.eye_open), lerp(n.mouth_curve, self.mouth_curve),
            lerp(n.mouth_open, self.mouth_open), lerp(n.mouth_width, self.mouth_width),
            lerp(n.sneer, self.sneer), self.teeth and k > 0.3, self.round_mouth and k > 0.3,
        )


NEUTRAL = Expression()
EXPRESSIONS: dict[str, Expression] = {
    "neutral": NEUTRAL,
    "happy": Expression(brow_raise=0.25, eye_open=0.6, mouth_curve=1.2, mouth_open=0.55, mouth_width=1.35, teeth=True),
    "sad": Expression(brow_raise=0.1, brow_tilt=-1.1, eye_open=0.55, mouth_curve=-1.1, mouth_width=0.9),
    "angry": Expression(brow_raise=-0.5, brow_tilt=1.3, eye_open=0.5, mouth_curve=-0.45, mouth_open=0.35, mouth_width=1.1, teeth=True),
    "fear": Expression(brow_raise=0.6, brow_tilt=-0.8, eye_open=1.45, mouth_curve=-0.45, mouth_open=0.6, mouth_width=1.35),
    "surprise": Expression(brow_raise=0.8, brow_arch=0.6, eye_open=1.4, mouth_open=0.45, mouth_width=0.5, round_mouth=True),
    "disgust": Expression(brow_raise=-0.3, brow_tilt=0.5, brow_asym=0.6, eye_open=0.6, mouth_curve=-0.7, mouth_open=0.15, sneer=1.0),
}
# Clue phrases for what each expression draws; the extras are drawn only at strong intensity.
FACE_CLUES: dict[str, tuple[str, ...]] = {
    "neutral": ("a relaxed face", "a closed, straight mouth"),
    "happy": ("a broad smile showing teeth", "smiling, crinkled eyes"),
    "sad": ("drooping mouth corners", "raised inner brows", "half-closed eyes"),
    "angry": ("furrowed brows", "narrowed eyes", "bared, clenched teeth"),
    "fear": ("wide-open eyes", "raised, drawn-together brows", "a stretched open mouth"),
    "surprise": ("high arched brows", "wide-open eyes", "a round open mouth"),
    "disgust": ("a wrinkled nose", "a raised upper lip", "one lowered brow"),
}
EXTRA_CLUES = {
    "happy": "rosy cheeks", "sad": "a tear on the cheek", "angry": "a reddened face",
    "fear": "a pale face with a bead of sweat", "disgust": "a greenish face",
}
SKIN_TONES = ((255, 224, 196), (241, 194, 161), (224, 172, 125), (198, 140, 90), (170, 115, 75), (145, 98, 66))
HAIR_COLORS = ((30, 20, 15), (70, 45, 25), (120, 80, 40), (200, 170, 110), (90, 90, 90), (20, 20, 20))


def face_clues(emotion: str, intensity: str, expressive: bool) -> list[str]:
    if not expressive:
        return list(FACE_CLUES["neutral"])
    clues = list(FACE_CLUES[emotion])
    if intensity == "strong" and emotion in EXTRA_CLUES:
        clues.append(EXTRA_CLUES[emotion])
    return clues


@dataclass
class FaceStyle:
    """Per-sample identity, placement, motion and background."""

    size: int
    cx: float
    cy: float
    b: float  # half face height in pixels
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    background: np.ndarray = field(repr=False)
    noise: float
    sway: tuple[float, float, float]  # x amplitude (px), y amplitude (px), rotation amplitude (deg)
    phase: tuple[float, float, float]
    freq: float
    blinks: tuple[int, ...]


def sample_style(rng: np.random.Generator, size: int, n_frames: int) -> FaceStyle:
    frac = rng.uniform(0.52, 0.68)  # face height / frame height
    b = frac * size / 2
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.02, 0.06) * size
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    skin = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in skin)
    hair = HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))]
    shirt = tuple(int(c) for c in rng.integers(30, 220, 3))
    n_blinks = int(rng.integers(0, 3))
    blinks = tuple(sorted(int(x) for x in rng.integers(0, max(n_frames, 1), n_blinks)))
    return FaceStyle(
        size=size, cx=cx, cy=cy, b=b, skin=skin, hair=hair, shirt=shirt,
        background=_background(rng, size), noise=float(rng.uniform(1.5, 6.0)),
        sway=(rng.uniform(0.5, 4.0), rng.uniform(0.5, 2.5), rng.uniform(0.5, 5.0)),
        phase=tuple(rng.uniform(0, 2 * np.pi, 3)), freq=float(rng.uniform(0.3, 0.9)), blinks=blinks,
    )


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c1, c2 = rng.integers(20, 235, 3), rng.integers(20, 235, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    if rng.random() < 0.5:
        t = t.transpose(1, 0, 2)
    img = (c1 * (1 - t) + c2 * t) * np.ones((size, size, 1), np.float32)
    img = img.astype(np.uint8).copy()
    for _ in range(int(rng.integers(2, 7))):  # furniture-like shapes, blended in softly
        layer = img.copy()
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 10, size // 2, 2))
        if rng.random() < 0.5:
            cv2.rectangle(layer, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(layer, (x, y), w // 2, color, -1, cv2.LINE_AA)
        img = cv2.addWeighted(layer, 0.45, img, 0.55, 0)
    return img


def _tint(color, emotion: str, strong: bool, expressive: bool):
    if not (strong and expressive):
        return tuple(int(c) for c in color)
    c = np.array(color, np.float32)
    if emotion == "angry":
        c = c * 0.75 + np.array([235, 60, 50]) * 0.25
    elif emotion == "fear":
        c = c * 0.7 + np.array([225, 230, 240]) * 0.3
    elif emotion == "disgust":
        c = c * 0.8 + np.array([140, 190, 90]) * 0.2
    return tuple(int(v) for v in np.clip(c, 0, 255))


class _Pen:
    """Draws in face coordinates (units of the half face height b, origin at the face centre),
    rotated and shifted by the head pose, with sub-pixel precision."""

    SHIFT = 4

    def __init__(self, img: np.ndarray, cx: float, cy: float, b: float, angle_deg: float):
        self.img, self.cx, self.cy, self.b = img, cx, cy, b
        self.angle = angle_deg
        th = np.deg2rad(angle_deg)
        self.c, self.s = np.cos(th), np.sin(th)

    def pt(self, x: float, y: float) -> tuple[int, int]:
        X = self.cx + (x * self.c - y * self.s) * self.b
        Y = self.cy + (x * self.s + y * self.c) * self.b
        return int(round(X * 16)), int(round(Y * 16))

    def ellipse(self, x, y, ax, ay, color, thickness=-1, start=0, end=360):
        axes = (max(1, int(round(ax * self.b * 16))), max(1, int(round(ay * self.b * 16))))
        cv2.ellipse(self.img, self.pt(x, y), axes, self.angle, start, end, color, thickness, cv2.LINE_AA, self.SHIFT)

    def poly(self, pts, color, thickness: int, closed=False):
        arr = np.array([self.pt(x, y) for x, y in pts], np.int32)
        cv2.polylines(self.img, [arr], closed, color, max(1, thickness), cv2.LINE_AA, self.SHIFT)

    def fill(self, pts, color):
        arr = np.array([self.pt(x, y) for x, y in pts], np.int32)
        cv2.fillPoly(self.img, [arr], color, cv2.LINE_AA, self.SHIFT)

    def px(self, units: float) -> int:
        return max(1, int(round(units * self.b)))


def render_frame(style: FaceStyle, expr: Expression, emotion: str, strong: bool, expressive: bool,
                 t: float, talk: float, blink: bool, rng: np.random.Generator) -> np.ndarray:
    """One RGB frame at time t (seconds); talk in [0, 1] is the speech envelope (mouth motion)."""
    img = style.background.copy()
    w = 2 * np.pi * style.freq
    dx = style.sway[0] * np.sin(w * t + style.phase[0])
    dy = style.sway[1] * np.sin(1.7 * w * t + style.phase[1])
    ang = style.sway[2] * np.sin(0.8 * w * t + style.phase[2])
    p = _Pen(img, style.cx + dx, style.cy + dy, style.b, ang)
    skin = _tint(style.skin, emotion, strong, expressive)
    dark = tuple(int(c * 0.62) for c in skin)
    aw = 0.78  # half face width / half face height

    # body, hair behind the head, ears, head
    p.ellipse(0, 2.05, 1.55, 0.8, style.shirt)
    p.fill([(-0.28, 0.8), (0.28, 0.8), (0.3, 1.45), (-0.3, 1.45)], dark)
    p.ellipse(0, -0.12, aw + 0.1, 1.08, style.hair)
    for s in (-1, 1):
        p.ellipse(s * aw * 0.98, 0.0, 0.11, 0.19, skin)
    p.ellipse(0, 0, aw, 1.0, skin)
    p.ellipse(0, -0.86, aw * 0.9, 0.22, style.hair, -1, 180, 360)  # fringe

    # eye sockets a shade darker than the cheeks, as on real faces (this is what Haar features key on)
    # eyes
    eo = expr.eye_open * (0.12 if blink else 1.0)
    ew = 0.17
    eh = max(0.012, 0.5 * ew * eo)
    socket = tuple(int(c * 0.84) for c in skin)
    light = tuple(int(min(255, c * 1.12 + 12)) for c in skin)
    p.ellipse(0, -0.05, 0.09, 0.32, light)  # lit nose bridge and forehead
    for s in (-1, 1):
        p.ellipse(s * 0.42, 0.2, 0.14, 0.09, light)  # lit cheeks
        p.ellipse(s * 0.3, -0.17, 0.24, 0.13, socket)
    for s in (-1, 1):
        ex, ey = s * 0.3, -0.14
        p.ellipse(ex, ey, ew, eh, (222, 218, 212))
        ri = 0.085
        p.ellipse(ex, ey, ri, min(ri, eh * 0.95), (70, 45, 30))
        p.ellipse(ex, ey, 0.04, min(0.04, eh * 0.7), (10, 10, 10))
        p.ellipse(ex, ey, ew, eh, (35, 25, 20), p.px(0.025))
        p.ellipse(ex, ey - 0.005, ew * 1.02, eh * 1.08, (25, 20, 15), p.px(0.045), 190, 350)  # upper lid

    # brows: inner end at |x|=0.1, outer at 0.5
    for s in (-1, 1):
        asym = expr.brow_asym if s > 0 else 0.0
        base = -0.38 - 0.16 * expr.brow_raise + 0.12 * asym
        inner = base + 0.13 * expr.brow_tilt
        outer = base - 0.04 * expr.brow_tilt
        mid = (inner + outer) / 2 - 0.05 - 0.08 * expr.brow_arch
        p.poly([(s * 0.1, inner), (s * 0.3, mid), (s * 0.5, outer)], style.hair if sum(style.hair) < 300 else (40, 30, 20), p.px(0.07))

    # nose (and disgust wrinkles)
    p.poly([(-0.02, -0.05), (-0.07, 0.22), (0.0, 0.26), (0.07, 0.22)], dark, p.px(0.03))
    if expr.sneer > 0.3:
        for s in (-1, 1):
            for k in range(3):
                y0 = 0.0 + 0.06 * k
                p.poly([(s * 0.06, y0), (s * 0.16, y0 - 0.04)], dark, p.px(0.022))

    # mouth
    _mouth(p, expr, talk, dark)

    # strong-intensity extras
    if strong and expressive:
        if emotion == "happy":
            for s in (-1, 1):
                layer = img.copy()
                _Pen(layer, p.cx, p.cy, p.b, p.angle).ellipse(s * 0.45, 0.25, 0.12, 0.08, (235, 110, 120))
                cv2.addWeighted(layer, 0.5, img, 0.5, 0, dst=img)
        elif emotion == "sad":
            p.fill([(0.3, 0.0), (0.26, 0.12), (0.3, 0.16), (0.34, 0.12)], (120, 170, 255))
        elif emotion == "fear":
            p.fill([(-0.62, -0.45), (-0.66, -0.33), (-0.62, -0.29), (-0.58, -0.33)], (150, 200, 255))

    if style.noise > 0:
        noise = rng.normal(0, style.noise, img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img


def _mouth(p: _Pen, expr: Expression, talk: float, dark) -> None:
    my = 0.5
    half = 0.24 * expr.mouth_width
    lip = (150, 60, 60)
    opening = min(1.0, expr.mouth_open + 0.3 * talk)
    if expr.round_mouth:
        h = 0.07 + 0.13 * opening
        p.ellipse(0, my, half, h, (50, 15, 25))
        p.ellipse(0, my, half, h, lip, p.px(0.035))
        return
    xs = np.linspace(-1, 1, 17)
    bow = 1 - xs**2
    corner = np.where(xs < 0, -0.12 * expr.mouth_curve, -0.12 * expr.mouth_curve - 0.1 * expr.sneer)
    centre = my + corner * (xs**2)  # a parabola through the corners
    gap = 0.2 * opening
    up_frac = 0.25 if expr.mouth_curve > 0.3 else 0.5
    upper = centre - gap * up_frac * bow - 0.08 * expr.sneer * np.clip(xs, 0, 1) * bow
    lower = centre + gap * (1 - up_frac) * bow
    xs_pts = xs * half
    if opening > 0.03 or expr.sneer > 0.3:
        poly = list(zip(xs_pts, upper)) + list(zip(xs_pts[::-1], lower[::-1]))
        p.fill(poly, (50, 15, 25))
        if expr.teeth:
            band = upper + np.minimum(lower - upper, 0.07)
            p.fill(list(zip(xs_pts, upper)) + list(zip(xs_pts[::-1], band[::-1])), (245, 245, 240))
    p.poly(list(zip(xs_pts, upper)), lip, p.px(0.04))
    p.poly(list(zip(xs_pts, lower)), lip, p.px(0.04))


def render_clip(style: FaceStyle, emotion: str, intensity: str, expressive: bool, envelope: np.ndarray,
                fps: float, rng: np.random.Generator) -> np.ndarray:
    """All frames (T, H, W, 3) RGB; envelope holds one speech level in [0, 1] per frame."""
    strong = intensity == "strong"
    target = EXPRESSIONS[emotion if expressive else "neutral"]
    peak = 1.0 if strong else 0.7
    n = len(envelope)
    frames = np.empty((n, style.size, style.size, 3), np.uint8)
    for i in range(n):
        t = i / fps
        # the expression builds up over the first ~0.4 s, then holds with a slight wobble
        k = peak * min(1.0, 0.45 + t / 0.4) * (1.0 + 0.04 * np.sin(5.0 * t))
        expr = target.blend(k)
        frames[i] = render_frame(style, expr, emotion, strong, expressive, t, float(envelope[i]), i in style.blinks, rng)
    return frames
