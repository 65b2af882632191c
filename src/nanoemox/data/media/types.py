"""The media pipeline's configuration, result type, file-type tables and content sniffing."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..faces import FaceBox

VIDEO_EXTS = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".ts", ".mts", ".3gp", ".ogv"}
)
AUDIO_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp3", ".aac", ".wma", ".aif", ".aiff"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
MEDIA_EXTS = VIDEO_EXTS | AUDIO_EXTS | IMAGE_EXTS

SAMPLE_RATE = 16000


@dataclass
class MediaConfig:
    n_frames: int = 8
    frame_size: int = 224
    n_clips: int = 8
    clip_seconds: float = 2.0
    sample_rate: int = SAMPLE_RATE
    max_seconds: float = 120.0  # cap on decoded duration (video and audio)
    face_size: int = 112
    detect_faces: bool = True
    detector: str = "haar"
    face_follow: str = "match"  # "match": template matching between detections; "detect": the detector in every frame
    max_pixels: int = 4096 * 4096
    frame_fit: str = "letterbox"  # or "crop" (centre crop after scaling the short side)
    face_margin: float = 0.2
    folder_fps: float = 25.0  # frame rate assumed for a folder of frame images
    seek_threshold_s: float = 30.0  # longer videos are sampled by seeking
    skip_nonref: bool = True  # skip non-reference frames: all with >= 6 frames per sample, else those not sampled
    decode_threads: int = 0  # 0: FFmpeg's choice

    def __post_init__(self) -> None:
        if self.n_frames < 1 or self.n_clips < 1 or self.frame_size < 8 or self.face_size < 8:
            raise ValueError("n_frames and n_clips must be >= 1, frame_size and face_size >= 8")
        if self.clip_seconds <= 0 or self.max_seconds <= 0 or self.sample_rate <= 0:
            raise ValueError("clip_seconds, max_seconds and sample_rate must be positive")
        if self.face_follow not in ("match", "detect"):
            raise ValueError(f"face_follow must be 'match' or 'detect', got {self.face_follow!r}")
        if self.frame_fit not in ("letterbox", "crop"):
            raise ValueError(f"frame_fit must be 'letterbox' or 'crop', got {self.frame_fit!r}")


@dataclass
class MediaInput:
    path: str | None
    frames: np.ndarray | None = None  # (T, S, S, 3) uint8 RGB
    frame_times: np.ndarray | None = None  # (T,) seconds from the start
    frames_repeated: int = 0
    faces: np.ndarray | None = None  # (T, F, F, 3) uint8, zeros where no face
    face_mask: np.ndarray | None = None  # (T,) bool
    audio: np.ndarray | None = None  # (N,) float32 mono at sample_rate
    audio_clips: np.ndarray | None = None  # (K, clip_seconds * sample_rate) float32
    audio_clip_mask: np.ndarray | None = None  # (K,) bool, False for pure padding
    duration_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    face_boxes: list[FaceBox | None] | None = field(default=None, repr=False)  # in working-resolution pixels

    @property
    def has_video(self) -> bool:
        return self.frames is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def has_face(self) -> bool:
        return self.face_mask is not None and bool(np.any(self.face_mask))

    def summary(self) -> dict[str, Any]:
        """The JSON-ready summary `nanoemox inspect` prints."""
        v = self.info.get("video") or {}
        a = self.info.get("audio") or {}
        return {
            "path": self.path,
            "ok": True,
            "error": None,
            "duration_s": None if self.duration_s is None else round(float(self.duration_s), 3),
            "video": None
            if self.frames is None
            else {
                "width": v.get("width"),
                "height": v.get("height"),
                "fps": None if v.get("fps") is None else round(float(v["fps"]), 3),
                "codec": v.get("codec"),
                "frames_sampled": int(self.frames.shape[0]),
                "frames_repeated": int(self.frames_repeated),
            },
            "audio": None
            if self.audio is None
            else {
                "sample_rate": SAMPLE_RATE if not a.get("resampled_rate") else a["resampled_rate"],
                "seconds": round(len(self.audio) / float(a.get("resampled_rate") or SAMPLE_RATE), 3),
                "codec": a.get("codec"),
                "source_rate": a.get("sample_rate"),
                "channels": a.get("channels"),
            },
            "faces": None
            if self.face_mask is None
            else {"frames_with_face": int(np.sum(self.face_mask)), "frames": int(len(self.face_mask))},
            "warnings": list(self.warnings),
        }


def is_media_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTS


# --- sniffing ----------------------------------------------------------------------------------
def sniff(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"BM"):
        return "image"
    if head.startswith((b"GIF87a", b"GIF89a")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if head[4:8] == b"ftyp" or head[:4] in (b"RIFF", b"\x1aE\xdf\xa3", b"OggS", b"fLaC", b"FORM") or head[:3] == b"ID3":
        return "av"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xf1", b"\xff\xf9"):  # MPEG audio / ADTS
        return "av"
    if head[:4] == b"\x00\x00\x01\xba" or head[:1] == b"G":  # MPEG-PS / TS
        return "av"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "av"
    return None


def looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)
