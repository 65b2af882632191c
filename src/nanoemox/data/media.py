"""Media pipeline: any clip, sound file or picture -> the fixed-size arrays the encoders take.

`load_media(path, cfg)` returns a `MediaInput`:

- frames: `n_frames` RGB frames sampled uniformly over the clip (the frame nearest the centre of
  each of `n_frames` equal time segments), **letterboxed** to `frame_size` x `frame_size`: the whole
  picture is kept, scaled to fit, centred on black bars (nothing is cropped away, so an off-centre
  speaker is never cut out). `frame_fit="crop"` centre-crops instead.
- faces: one face track per clip. The largest face is found in the middle frame (else in the
  first-quarter, third-quarter or next frame, at most 4 whole-frame searches, each a cheap search
  for large faces first), then followed frame to frame, both ways, inside a small window around
  its last position. Frames where the tracked face is not found are marked
  (`face_mask` False, zero crop): no face is invented and no other person's face is substituted.
- audio: the whole decoded track as 16 kHz mono float32 (capped at `max_seconds`), plus
  `n_clips` clips of `clip_seconds` each. A track longer than `n_clips * clip_seconds` gets clips
  spread uniformly over it (evenly spaced starts, first at 0, last ending at the end); a shorter
  track is cut into consecutive clips from the start, the last real one zero-padded and the rest
  pure padding (`audio_clip_mask` False).

Decoding uses PyAV: one demux pass, each stream decoded once (frame-threaded video decoding),
only the sampled frames converted to RGB (straight to a working resolution by swscale), audio
resampled by `av.AudioResampler` to 16 kHz mono float. Decoding stops at `max_seconds`, so no
input can make it run unbounded. Videos longer than `seek_threshold_s` are sampled by seeking to
each target time instead of decoding everything.

Unusable input raises `MediaError(path, reason)`: missing, empty, truncated or corrupt, not a media
file, no usable stream, undecodable codec, resolution above `max_pixels`. A silent track or a
clip without a detectable face is a warning (`MediaInput.warnings`), not an error.

`media_from_arrays()` builds the same `MediaInput` from in-memory frames / waveform, and
`write_video()` / `write_audio()` write clips (tests, generated corpora).
"""
from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import MediaError
from .faces import FaceBox, crop_face, get_detector, iou

log = logging.getLogger(__name__)

__all__ = [
    "MediaConfig",
    "MediaInput",
    "load_media",
    "media_from_arrays",
    "write_video",
    "write_audio",
    "fit_frame",
    "audio_clips",
    "is_media_file",
    "VIDEO_EXTS",
    "AUDIO_EXTS",
    "IMAGE_EXTS",
    "MEDIA_EXTS",
]

VIDEO_EXTS = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".ts", ".mts", ".3gp", ".ogv"}
)
AUDIO_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp3", ".aac", ".wma", ".aif", ".aiff"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
MEDIA_EXTS = VIDEO_EXTS | AUDIO_EXTS | IMAGE_EXTS

SAMPLE_RATE = 16000
_SILENCE_PEAK = 1e-3  # -60 dBFS: below this the whole track counts as silent
_WORK_SIDE = 960  # long side of the working resolution (face detection and crops)


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
    max_pixels: int = 4096 * 4096
    frame_fit: str = "letterbox"  # or "crop" (centre crop after scaling the short side)
    face_margin: float = 0.2
    folder_fps: float = 25.0  # frame rate assumed for a folder of frame images
    seek_threshold_s: float = 30.0  # longer videos are sampled by seeking
    skip_nonref: bool = True  # skip non-reference frames when the clip has >= 6 frames per sample
    decode_threads: int = 0  # 0: FFmpeg's choice

    def __post_init__(self) -> None:
        if self.n_frames < 1 or self.n_clips < 1 or self.frame_size < 8 or self.face_size < 8:
            raise ValueError("n_frames and n_clips must be >= 1, frame_size and face_size >= 8")
        if self.clip_seconds <= 0 or self.max_seconds <= 0 or self.sample_rate <= 0:
            raise ValueError("clip_seconds, max_seconds and sample_rate must be positive")
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


# --- public entry points -----------------------------------------------------------------------
def load_media(path: str | os.PathLike, cfg: MediaConfig | None = None) -> MediaInput:
    """Decode a video, sound file, picture or folder of frame pictures (see module docstring)."""
    cfg = cfg or MediaConfig()
    p = Path(path)
    spath = str(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MediaError(spath, "file not found") from None
    except OSError as e:
        raise MediaError(spath, f"cannot read: {e.strerror or e}") from None
    if p.is_dir():
        return _load_frame_folder(p, cfg)
    if st.st_size == 0:
        raise MediaError(spath, "empty file (0 bytes)")
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise MediaError(spath, f"cannot read: {e.strerror or e}") from None
    kind = _sniff(head)
    if kind == "image" or (kind is None and p.suffix.lower() in IMAGE_EXTS):
        return _load_image(p, cfg, head)
    return _load_av(p, cfg, head)


def media_from_arrays(
    frames: np.ndarray | Sequence[np.ndarray] | None = None,
    waveform: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    cfg: MediaConfig | None = None,
    *,
    fps: float | None = None,
    path: str | None = None,
) -> MediaInput:
    """The in-memory API: frames (T,H,W,3) uint8 RGB, or one (H,W,3) image, and/or a waveform
    ((N,), (C,N) or (N,C); float in [-1,1] or int16) at `sample_rate`. `fps` (when known) gives
    frame times in seconds; without it frame_times is None for a sequence."""
    cfg = cfg or MediaConfig()
    if frames is None and waveform is None:
        raise MediaError(path or "<arrays>", "no frames and no waveform given")
    out = MediaInput(path=path)
    images: list[np.ndarray] = []
    idx = np.zeros(0, dtype=int)
    if frames is not None:
        try:
            arr = frames if isinstance(frames, np.ndarray) else np.stack([np.asarray(f) for f in frames])
        except ValueError as e:
            raise MediaError(path or "<arrays>", f"frames of different shapes ({e})") from None
        arr = _as_uint8_rgb(arr, path or "<arrays>")
        if arr.ndim == 3:  # one picture
            arr = arr[None]
            still = True
        else:
            still = arr.shape[0] == 1
        n = arr.shape[0]
        if n == 0:
            raise MediaError(path or "<arrays>", "empty frame sequence")
        h, w = arr.shape[1:3]
        if h * w > cfg.max_pixels:
            raise MediaError(path or "<arrays>", f"resolution {w}x{h} is above max_pixels ({cfg.max_pixels})")
        idx = _uniform_indices(n, cfg.n_frames)
        images = [_to_work(arr[i]) for i in sorted(set(idx.tolist()))]
        uniq = {v: k for k, v in enumerate(sorted(set(idx.tolist())))}
        out.frames_repeated = cfg.n_frames - len(uniq)
        if fps:
            out.frame_times = idx.astype(np.float64) / float(fps)
            out.duration_s = n / float(fps)
        elif still:
            out.frame_times = np.zeros(cfg.n_frames)
        out.info["video"] = {"width": int(w), "height": int(h), "fps": fps, "codec": "raw", "frames_decoded": int(n)}
        _finish_video(out, images, [uniq[i] for i in idx.tolist()], cfg)
    if waveform is not None:
        wav = _as_mono_float(waveform)
        if sample_rate != cfg.sample_rate:
            wav = _resample(wav, int(sample_rate), cfg.sample_rate)
        wav = wav[: int(cfg.max_seconds * cfg.sample_rate)]
        out.info["audio"] = {"codec": "raw", "sample_rate": int(sample_rate), "channels": _channels(waveform), "resampled_rate": cfg.sample_rate}
        _finish_audio(out, wav, cfg)
        out.duration_s = max(out.duration_s or 0.0, len(wav) / float(cfg.sample_rate))
    return out


# --- sniffing ----------------------------------------------------------------------------------
def _sniff(head: bytes) -> str | None:
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


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)


# --- still images and frame folders ------------------------------------------------------------
def _read_picture(p: Path, cfg: MediaConfig) -> np.ndarray:
    from PIL import Image, ImageOps

    spath = str(p)
    try:
        img = Image.open(p)
    except Image.DecompressionBombError as e:
        raise MediaError(spath, f"resolution above max_pixels ({e})") from None
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        raise MediaError(spath, f"not a readable image ({type(e).__name__}: {e})") from None
    with img:
        w, h = img.size
        if w <= 0 or h <= 0:
            raise MediaError(spath, "image has no pixels")
        if w * h > cfg.max_pixels:
            raise MediaError(spath, f"resolution {w}x{h} is above max_pixels ({cfg.max_pixels})")
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = np.asarray(img.convert("RGB"))
        except Exception as e:
            raise MediaError(spath, f"corrupt or truncated image ({e})") from None
    return rgb


def _load_image(p: Path, cfg: MediaConfig, head: bytes) -> MediaInput:
    rgb = _read_picture(p, cfg)
    h, w = rgb.shape[:2]
    out = MediaInput(path=str(p), frame_times=np.zeros(cfg.n_frames), frames_repeated=cfg.n_frames - 1, duration_s=None)
    out.info = {"container": "image", "video": {"width": w, "height": h, "fps": None, "codec": "image", "frames_decoded": 1}}
    _finish_video(out, [_to_work(rgb)], [0] * cfg.n_frames, cfg)
    return out


def _load_frame_folder(p: Path, cfg: MediaConfig) -> MediaInput:
    files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")), key=_natural_key)
    if not files:
        raise MediaError(str(p), "folder holds no frame images")
    n = len(files)
    idx = _uniform_indices(n, cfg.n_frames)
    uniq_ids = sorted(set(idx.tolist()))
    images = []
    size = None
    for i in uniq_ids:
        rgb = _read_picture(files[i], cfg)
        size = rgb.shape[:2]
        images.append(_to_work(rgb))
    remap = {v: k for k, v in enumerate(uniq_ids)}
    fps = cfg.folder_fps
    out = MediaInput(
        path=str(p),
        frame_times=idx.astype(np.float64) / fps,
        frames_repeated=cfg.n_frames - len(uniq_ids),
        duration_s=n / fps,
    )
    out.info = {"container": "frames", "video": {"width": size[1], "height": size[0], "fps": fps, "codec": "images", "frames_decoded": n}}
    _finish_video(out, images, [remap[i] for i in idx.tolist()], cfg)
    return out


def _natural_key(f: Path):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f.name)]


# --- audio/video containers --------------------------------------------------------------------
def _open_container(p: Path, head: bytes):
    import av

    spath = str(p)
    try:
        return av.open(spath, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        if _looks_like_text(head) or _sniff(head) is None:
            raise MediaError(spath, "not a media file (content not recognised)") from None
        raise MediaError(spath, f"corrupt or truncated file ({_ff_msg(e)})") from None
    except av.error.FFmpegError as e:
        raise MediaError(spath, f"cannot open ({_ff_msg(e)})") from None


def _ff_msg(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(":")[0].strip() if msg else type(e).__name__


def _fraction_float(x) -> float | None:
    try:
        return float(x) if x else None
    except (TypeError, ZeroDivisionError, ValueError):
        return None


def _first_decodable(streams, kind: str, bad: list[str]):
    """The first stream whose codec FFmpeg can decode; the others are noted in `bad`."""
    for stream in streams:
        ok, name = _codec_ok(stream)
        if ok:
            return stream
        bad.append(f"{kind} codec {name!r}")
    return None


def _codec_ok(stream) -> tuple[bool, str]:
    """Whether FFmpeg can decode this stream; (ok, codec name)."""
    import av

    try:
        ctx = stream.codec_context
    except Exception:  # pragma: no cover - PyAV refuses streams without a decoder
        return False, "unknown"
    if ctx is None:
        return False, "unknown"
    name = getattr(ctx, "name", None) or "unknown"
    if name in ("none", "unknown"):
        return False, name
    try:
        av.codec.Codec(name, "r")
    except Exception:
        return False, name
    return True, name


def _codec_name(ctx) -> str:
    """The codec's canonical name ("mp3", not the decoder's "mp3float")."""
    try:
        return ctx.codec.canonical_name or ctx.name
    except Exception:
        return ctx.name


def _load_av(p: Path, cfg: MediaConfig, head: bytes) -> MediaInput:
    import av

    spath = str(p)
    container = _open_container(p, head)
    try:
        return _decode_container(container, p, cfg, head)
    except MediaError:
        raise
    except av.error.FFmpegError as e:
        raise MediaError(spath, f"corrupt or undecodable ({_ff_msg(e)})") from None
    finally:
        container.close()


def _scan_video_span(p: Path, head: bytes, stream_index: int, max_seconds: float) -> float | None:
    """Video length from packet timestamps (no decoding), for containers that do not declare it."""
    import av

    container = _open_container(p, head)
    try:
        vs = container.streams[stream_index]
        tb = vs.time_base
        start = float(vs.start_time * tb) if vs.start_time is not None and tb else 0.0
        end = None
        n = 0
        for pkt in container.demux(vs):
            n += 1
            if pkt.pts is not None and tb:
                t = float((pkt.pts + (pkt.duration or 0)) * tb)
                end = t if end is None else max(end, t)
                if end - start > max_seconds:
                    break
        if end is None:
            return None
        return end - start
    except av.error.FFmpegError:
        return None
    finally:
        container.close()


def _stream_duration(stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:  # Matroska: "00:00:01.600000000"
        try:
            hh, mm, ss = str(tag).split(":")
            return int(hh) * 3600 + int(mm) * 60 + float(ss)
        except ValueError:
            return None
    return None


def _decode_container(container, p: Path, cfg: MediaConfig, head: bytes) -> MediaInput:
    spath = str(p)
    info: dict[str, Any] = {"container": container.format.name if container.format else None}
    vstreams = [s for s in container.streams.video if not _is_attached_pic(s)]
    astreams = list(container.streams.audio)
    if not vstreams and not astreams:
        raise MediaError(spath, "no usable stream (no audio or video track)")
    warnings: list[str] = []
    bad: list[str] = []
    vs = _first_decodable(vstreams, "video", bad)
    as_ = _first_decodable(astreams, "audio", bad)
    if vs is None and as_ is None:
        raise MediaError(spath, "unsupported codec: " + ", ".join(bad))
    if bad:
        warnings.append("ignored undecodable stream(s): " + ", ".join(bad))

    cdur = container.duration / 1_000_000.0 if container.duration else None
    if info["container"] == "wav":
        why = _wav_truncated(p)
        if why:
            raise MediaError(spath, why)
    if vs is not None:
        ctx = vs.codec_context
        w, h = int(ctx.width or 0), int(ctx.height or 0)
        if w * h > cfg.max_pixels:
            raise MediaError(spath, f"resolution {w}x{h} is above max_pixels ({cfg.max_pixels})")
        fps = _fraction_float(vs.average_rate) or _fraction_float(vs.guessed_rate) or _fraction_float(vs.base_rate)
        vdur = _stream_duration(vs)
        info["video"] = {
            "codec": _codec_name(ctx),
            "width": w,
            "height": h,
            "fps": fps,
            "pix_fmt": getattr(ctx.format, "name", None) if ctx.format else None,
            "frames": int(vs.frames or 0) or None,
            "duration_s": vdur,
        }
    if as_ is not None:
        actx = as_.codec_context
        adur = _stream_duration(as_)
        info["audio"] = {
            "codec": _codec_name(actx),
            "sample_rate": int(actx.sample_rate or 0) or None,
            "channels": int(getattr(actx, "channels", 0) or (actx.layout.nb_channels if actx.layout else 0)) or None,
            "layout": actx.layout.name if actx.layout else None,
            "duration_s": adur,
            "resampled_rate": cfg.sample_rate,
        }
    info["duration_s"] = cdur

    # The video's time span: its own duration, else frames / fps, else a packet scan, else the
    # container's duration (which may include a longer audio track).
    v_start = 0.0
    v_span = None
    v_span_own = False
    if vs is not None:
        v_start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
        v_span = info["video"]["duration_s"]
        if not v_span and info["video"]["frames"] and info["video"]["fps"]:
            v_span = info["video"]["frames"] / info["video"]["fps"]
        if not v_span:
            v_span = _scan_video_span(p, head, vs.index, cfg.max_seconds)
        v_span_own = bool(v_span)
        if not v_span:
            v_span = cdur
    capped = False
    if v_span:
        if v_span > cfg.max_seconds:
            capped = True
        v_span = min(v_span, cfg.max_seconds)

    if vs is not None and v_span and v_span > cfg.seek_threshold_s and _seekable(container):
        res = _decode_seek(container, vs, as_, v_start, v_span, cfg, spath)
    else:
        res = _decode_linear(container, vs, as_, v_start, v_span, cfg, spath)
    warnings.extend(res["warnings"])
    if capped or res["capped"]:
        warnings.append(f"decoded only the first {cfg.max_seconds:g} s (max_seconds)")

    out = MediaInput(path=spath, info=info, warnings=warnings)
    # video
    if vs is not None:
        chosen = res["chosen"]
        if chosen is None:
            raise MediaError(spath, f"corrupt or truncated: no video frame could be decoded{_err_suffix(res)}")
        else:
            info["video"]["frames_decoded"] = res["n_video"]
            expected = v_span
            got = res["video_end"] - v_start if res["video_end"] is not None else 0.0
            w = _check_truncated(spath, expected, got, info["video"]["fps"], capped or res["capped"], res, warn=v_span_own)
            if w:
                warnings.append(w)
            frames_list, times, index = chosen
            images = [_to_work(f) for f in frames_list]
            out.frame_times = np.asarray([t - v_start for t in times], dtype=np.float64)
            out.frames_repeated = cfg.n_frames - len(images)
            _finish_video(out, images, index, cfg)
            if info["video"]["width"] == 0:
                info["video"]["height"], info["video"]["width"] = frames_list[0].shape[:2]
    # audio
    if as_ is not None:
        wav = res["audio"]
        if wav is None or wav.size == 0:
            if out.frames is None or res["errors"]:
                raise MediaError(spath, f"corrupt or truncated: no audio could be decoded{_err_suffix(res)}")
            warnings.append("audio stream holds no samples; using the video only")
            info["audio"]["decoded"] = False
        else:
            adur_decl = info["audio"]["duration_s"] or (cdur if vs is None else None)
            if adur_decl:
                w = _check_truncated(spath, min(adur_decl, cfg.max_seconds), len(wav) / cfg.sample_rate, None, capped or res["capped"], res, warn=vs is None)
                if w:
                    warnings.append(w)
            _finish_audio(out, wav, cfg)
    spans = []
    if out.frames is not None and v_span:
        spans.append(v_span)
    elif out.frames is not None and res["video_end"] is not None:
        spans.append(res["video_end"] - v_start)
    if out.audio is not None:
        spans.append(len(out.audio) / cfg.sample_rate)
    out.duration_s = max(spans) if spans else cdur
    return out


def _err_suffix(res) -> str:
    return f" ({res['errors'][0]})" if res.get("errors") else ""


def _check_truncated(spath: str, expected: float | None, got: float, fps: float | None, capped: bool, res, warn: bool = True) -> str | None:
    """A stream that stops well short of its declared length is a truncated file: an error when
    less than half of it decodes, else a warning (returned) when a noticeable part is missing."""
    if not expected or capped:
        return None
    frame = 1.0 / fps if fps else 0.0
    have = max(got, 0.0) + frame
    missing = expected - have
    if missing > 0.25 and have < 0.5 * expected:
        raise MediaError(spath, f"truncated or corrupt: decoded {max(got, 0):.2f} s of the declared {expected:.2f} s{_err_suffix(res)}")
    if warn and missing > max(0.5, 0.25 * expected):
        return f"stream ends early: decoded {max(got, 0):.2f} s of the declared {expected:.2f} s"
    return None


def _wav_truncated(p: Path) -> str | None:
    """WAV files carry their data size in the header; FFmpeg silently reads what is there."""
    import struct

    try:
        with open(p, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = p.stat().st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    have = size - pos - 8
                    if clen not in (0, 0xFFFFFFFF) and have < 0.9 * clen:
                        return f"truncated WAV: {have} of {clen} data bytes present"
                    return None
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return None
    return None


def _is_attached_pic(stream) -> bool:
    try:
        disp = stream.disposition
        import av

        return bool(disp & av.stream.Disposition.attached_pic)
    except Exception:
        return False


def _seekable(container) -> bool:
    name = container.format.name if container.format else ""
    return any(k in name for k in ("mp4", "mov", "matroska", "webm", "avi", "flv"))


def _target_times(start: float, span: float, n: int) -> np.ndarray:
    return start + (np.arange(n) + 0.5) * (span / n)


class _AudioSink:
    """Resample decoded audio frames to mono float at the target rate; stop at max_seconds."""

    def __init__(self, stream, cfg: MediaConfig):
        import av

        self.cfg = cfg
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
        self.chunks: list[np.ndarray] = []
        self.n = 0
        self.limit = int(round(cfg.max_seconds * cfg.sample_rate))
        self.done = False
        self.capped = False
        self.start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0

    def add(self, frame) -> None:
        if self.done:
            return
        for out in self.resampler.resample(frame):
            self._push(out)

    def _push(self, out) -> None:
        a = out.to_ndarray().reshape(-1)
        if a.dtype != np.float32:
            a = a.astype(np.float32)
        self.chunks.append(a)
        self.n += a.size
        if self.n >= self.limit:
            self.done = True
            self.capped = True

    def finish(self) -> np.ndarray | None:
        if not self.done:
            try:
                for out in self.resampler.resample(None):
                    self._push(out)
            except Exception:  # pragma: no cover - flushing an empty resampler
                pass
        if not self.chunks:
            return None
        wav = np.concatenate(self.chunks)[: self.limit]
        return np.ascontiguousarray(wav, dtype=np.float32)


class _FramePicker:
    """Keep, for each target time, the decoded frame nearest to it (frames arrive in time order)."""

    def __init__(self, targets: np.ndarray | None, fps: float | None, start: float):
        self.targets = targets
        self.best: list[Any] = [None] * (0 if targets is None else len(targets))
        self.best_t = [math.inf] * len(self.best)
        self.best_d = [math.inf] * len(self.best)
        self.fps = fps or 25.0
        self.start = start
        self.n = 0
        self.last_t: float | None = None
        self.all_frames: list[Any] = []  # only when the span is unknown (kept small: see add)
        self.keep_every = 1

    def frame_time(self, frame) -> float:
        t = frame.time
        if t is None or (self.last_t is not None and t < self.last_t - 5.0):
            t = self.start + self.n / self.fps if self.last_t is None else self.last_t + 1.0 / self.fps
        return float(t)

    def add(self, frame) -> float:
        t = self.frame_time(frame)
        self.n += 1
        self.last_t = t
        if self.targets is None:
            # Unknown length: keep a uniform subsample of at most 64 frames (stride doubles).
            if (self.n - 1) % self.keep_every == 0:
                self.all_frames.append((t, frame))
                if len(self.all_frames) > 64:
                    self.all_frames = self.all_frames[::2]
                    self.keep_every *= 2
            return t
        for i, tt in enumerate(self.targets):
            d = abs(t - tt)
            if d < self.best_d[i]:
                self.best[i], self.best_t[i], self.best_d[i] = frame, t, d
        return t

    def finished(self) -> bool:
        """All targets are behind us (the next frames can only be farther away)."""
        return self.targets is not None and self.last_t is not None and self.last_t >= self.targets[-1] and self.best[-1] is not None

    def result(self, n_frames: int):
        if self.targets is None:
            if not self.all_frames:
                return None
            t0, t1 = self.all_frames[0][0], self.all_frames[-1][0]
            span = max(t1 - t0, 1e-6) + 1.0 / self.fps
            self.targets = _target_times(t0, span, n_frames)
            self.best = [None] * n_frames
            self.best_d = [math.inf] * n_frames
            self.best_t = [math.inf] * n_frames
            frames, self.all_frames = self.all_frames, []
            for t, f in frames:
                for i, tt in enumerate(self.targets):
                    d = abs(t - tt)
                    if d < self.best_d[i]:
                        self.best[i], self.best_t[i], self.best_d[i] = f, t, d
        if any(b is None for b in self.best):
            return None
        uniq: dict[int, int] = {}
        frames, times, index = [], [], []
        for f, t in zip(self.best, self.best_t):
            k = id(f)
            if k not in uniq:
                uniq[k] = len(frames)
                frames.append(f)
            index.append(uniq[k])
            times.append(t)
        return frames, times, index


def _configure_video(vs, cfg: MediaConfig, expected_frames: float | None = None) -> bool:
    """Frame-threaded decoding; for clips with plenty of frames per sample, also skip decoding
    non-reference frames (h264/hevc B-frames nothing else depends on): the sampled frames then
    lie within a few frames of their targets, at a fraction of the decoding cost. Returns whether
    frames are skipped."""
    skipping = False
    try:
        vs.thread_type = "AUTO"
        if cfg.decode_threads:
            vs.thread_count = cfg.decode_threads
    except Exception:  # pragma: no cover - some decoders refuse threading options
        pass
    if cfg.skip_nonref and expected_frames and expected_frames >= 6 * cfg.n_frames:
        try:
            vs.codec_context.skip_frame = "NONREF"
            skipping = True
        except Exception:  # pragma: no cover
            skipping = False
    return skipping


def _decode_linear(container, vs, as_, v_start: float, v_span: float | None, cfg: MediaConfig, spath: str) -> dict:
    import av

    res: dict[str, Any] = {"warnings": [], "errors": [], "capped": False, "chosen": None, "audio": None, "n_video": 0, "video_end": None}
    streams = [s for s in (vs, as_) if s is not None]
    picker = None
    if vs is not None:
        fps = _fraction_float(vs.average_rate) or _fraction_float(vs.guessed_rate)
        res["skip_nonref"] = _configure_video(vs, cfg, v_span * fps if v_span and fps else None)
        targets = _target_times(v_start, v_span, cfg.n_frames) if v_span else None
        picker = _FramePicker(targets, fps, v_start)
    sink = _AudioSink(as_, cfg) if as_ is not None else None
    v_done = vs is None
    a_done = as_ is None
    v_limit = v_start + cfg.max_seconds
    n_err = 0

    def video_frames(frames):
        nonlocal v_done
        for fr in frames:
            if res["n_video"] == 0 and fr.width * fr.height > cfg.max_pixels:  # streams that declare no size
                raise MediaError(spath, f"resolution {fr.width}x{fr.height} is above max_pixels ({cfg.max_pixels})")
            t = picker.add(fr)
            res["video_end"] = t
            res["n_video"] += 1
            if t >= v_limit:
                res["capped"] = True
                v_done = True
                return
            if picker.finished():
                v_done = True
                return

    try:
        for packet in container.demux(*streams):
            if v_done and a_done:
                break
            st = packet.stream
            if st is vs:
                if v_done:
                    continue
                try:
                    video_frames(packet.decode())
                except av.error.FFmpegError as e:
                    n_err += 1
                    res["errors"].append(f"video: {_ff_msg(e)}")
                    if n_err > 100:
                        v_done = True
            elif st is as_:
                if a_done:
                    continue
                try:
                    for fr in packet.decode():
                        sink.add(fr)
                    if sink.done:
                        a_done = True
                        res["capped"] = True
                except av.error.FFmpegError as e:
                    n_err += 1
                    res["errors"].append(f"audio: {_ff_msg(e)}")
                    if n_err > 100:
                        a_done = True
    except av.error.FFmpegError as e:  # demuxing failed mid-file (truncated / corrupt)
        res["errors"].append(f"demux: {_ff_msg(e)}")
    # flush decoders
    # (demux ends with empty packets that already flush the decoders; a second flush says EOF)
    if vs is not None and not v_done:
        try:
            video_frames(vs.decode(None))
        except av.error.EOFError:
            pass
        except (av.error.FFmpegError, ValueError) as e:
            res["errors"].append(f"video flush: {_ff_msg(e)}")
    if as_ is not None and not a_done:
        try:
            for fr in as_.decode(None):
                sink.add(fr)
        except av.error.EOFError:
            pass
        except (av.error.FFmpegError, ValueError) as e:
            res["errors"].append(f"audio flush: {_ff_msg(e)}")
    if picker is not None:
        res["chosen"] = picker.result(cfg.n_frames)
    if sink is not None:
        res["audio"] = sink.finish()
        res["capped"] = res["capped"] or sink.capped
    if res["errors"]:
        res["warnings"].append(f"{len(res['errors'])} decoding error(s), first: {res['errors'][0]}")
    return res


def _decode_seek(container, vs, as_, v_start: float, v_span: float, cfg: MediaConfig, spath: str) -> dict:
    """Long videos: an audio-only pass, then one seek per target frame."""
    import av

    res: dict[str, Any] = {"warnings": [], "errors": [], "capped": False, "chosen": None, "audio": None, "n_video": 0, "video_end": None}
    if as_ is not None:
        sink = _AudioSink(as_, cfg)
        try:
            for packet in container.demux(as_):
                try:
                    for fr in packet.decode():
                        sink.add(fr)
                except av.error.FFmpegError as e:
                    res["errors"].append(f"audio: {_ff_msg(e)}")
                if sink.done:
                    break
        except av.error.FFmpegError as e:
            res["errors"].append(f"demux: {_ff_msg(e)}")
        res["audio"] = sink.finish()
        res["capped"] = sink.capped
    _configure_video(vs, cfg)
    targets = _target_times(v_start, v_span, cfg.n_frames)
    tb = vs.time_base
    fps = _fraction_float(vs.average_rate) or 25.0
    frames, times = [], []
    for tt in targets:
        got = None
        try:
            container.seek(int(tt / tb), stream=vs, backward=True, any_frame=False)
            vs.codec_context.flush_buffers()
            prev = None
            for packet in container.demux(vs):
                for fr in packet.decode():
                    res["n_video"] += 1
                    t = fr.time if fr.time is not None else tt
                    if t >= tt - 0.5 / fps:
                        got = fr if prev is None or abs(t - tt) <= abs(prev[0] - tt) else prev[1]
                        got_t = t if got is fr else prev[0]
                        break
                    prev = (t, fr)
                if got is not None:
                    break
            if got is None and prev is not None:
                got, got_t = prev[1], prev[0]
        except av.error.FFmpegError as e:
            res["errors"].append(f"seek: {_ff_msg(e)}")
        if got is None:
            break
        frames.append(got)
        times.append(got_t)
        res["video_end"] = max(res["video_end"] or 0.0, got_t)
    if len(frames) == len(targets):
        # the last target sits half a segment before the end: report the declared span
        res["video_end"] = v_start + v_span - 1.0 / fps
        uniq: dict[int, int] = {}
        keep, index = [], []
        for f in frames:
            key = int(f.pts) if f.pts is not None else id(f)
            if key not in uniq:
                uniq[key] = len(keep)
                keep.append(f)
            index.append(uniq[key])
        res["chosen"] = (keep, times, index)
    else:  # seeking failed: fall back to a linear pass from the start
        try:
            container.seek(0)
        except av.error.FFmpegError:
            pass
        lin = _decode_linear(container, vs, None, v_start, v_span, cfg, spath)
        res["chosen"], res["n_video"], res["video_end"] = lin["chosen"], lin["n_video"], lin["video_end"]
        res["errors"].extend(lin["errors"])
    if res["errors"]:
        res["warnings"].append(f"{len(res['errors'])} decoding error(s), first: {res['errors'][0]}")
    return res


# --- frames: working resolution, faces, final size ---------------------------------------------
def _to_work(frame) -> np.ndarray:
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
    if s < 1.0:  # bilinear: swscale widens the filter when shrinking
        img = ref.reformat(frame, width=tw, height=th, format="rgb24", interpolation="BILINEAR").to_ndarray()
    else:
        img = ref.reformat(frame, format="rgb24").to_ndarray()
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
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    r = cv2.resize(img, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else img
    if mode == "crop":
        y0, x0 = (nh - size) // 2, (nw - size) // 2
        return np.ascontiguousarray(r[y0 : y0 + size, x0 : x0 + size])
    out = np.zeros((size, size, 3), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = r
    return out


def _finish_video(out: MediaInput, images: list[np.ndarray], index: list[int], cfg: MediaConfig) -> None:
    """Fill frames / faces from the unique working images and the per-slot index into them."""
    T = len(index)
    fitted = [fit_frame(im, cfg.frame_size, cfg.frame_fit) for im in images]
    out.frames = np.stack([fitted[i] for i in index]).astype(np.uint8, copy=False)
    if not cfg.detect_faces:
        return
    boxes = track_faces(images, get_detector(cfg.detector))
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


def track_faces(images: Sequence[np.ndarray], detector, max_full: int = 4) -> list[FaceBox | None]:
    """One face track over a frame sequence (see the module docstring): returns a box or None
    per image.

    Anchor: frames are tried in the order middle, first quarter, third quarter, then nearest the
    middle (at most `max_full` of them), each searched coarse to fine (`_anchor_search`). The
    anchor is the largest face found. From it the face is followed both ways, each frame
    searched only in a window around the last tracked position."""
    n = len(images)
    boxes: list[FaceBox | None] = [None] * n
    if n == 0:
        return boxes
    mid = (n - 1) // 2
    order: list[int] = []
    for i in [mid, (n - 1) // 4, (3 * (n - 1) + 3) // 4] + sorted(range(n), key=lambda i: (abs(i - mid), i)):
        if i not in order:
            order.append(i)
    anchor = None
    for i in order[: max(1, max_full)]:
        found = _anchor_search(images[i], detector)
        if found is not None:
            anchor = i
            boxes[i] = found
            break
    if anchor is None:
        return boxes
    for direction in (1, -1):
        ref = boxes[anchor]
        i = anchor + direction
        while 0 <= i < n:
            b = _redetect(images[i], ref, detector)
            if b is not None:
                boxes[i] = b
                ref = b
            i += direction
    return boxes


def _anchor_search(img: np.ndarray, detector) -> FaceBox | None:
    """The largest face in a whole frame, searched coarse to fine: faces of at least a third, then
    a sixth of the short side (each level costs about a quarter of the next), a coarse hit being
    confirmed by a strict search around it unless its score is high (the detector's
    `confident_score`); then the detector's full range."""
    short = min(img.shape[:2])
    for div in (3.0, 6.0):
        try:
            coarse = detector.detect(img, min_face=short / div)
        except TypeError:  # a detector without the search-range keywords: one plain search
            break
        if coarse:
            if coarse[0].score >= getattr(detector, "confident_score", math.inf):
                return coarse[0]
            confirmed = _redetect(img, coarse[0], detector, strict=True)
            if confirmed is not None:
                return confirmed
    found = detector.detect(img)
    return found[0] if found else None


def _redetect(img: np.ndarray, ref: FaceBox, detector, strict: bool = False) -> FaceBox | None:
    """Find the tracked face near `ref`: a search window of 3x its size, scaled so the face is
    about 52 px, faces 0.55-1.45x its size, a lower grouping threshold than a full search (the
    window already rules most false hits out) unless `strict`."""
    H, W = img.shape[:2]
    side = max(ref.w, ref.h)
    cx, cy = ref.center
    half = 1.5 * side
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(W, int(cx + half)), min(H, int(cy + half))
    if x1 - x0 < 12 or y1 - y0 < 12:
        return None
    roi = img[y0:y1, x0:x1]
    try:
        found = detector.detect(roi, min_face=0.55 * side, max_face=1.45 * side, min_neighbors=5 if strict else 3, scale_factor=1.1,
                                scale=min(2.0, 52.0 / side))  # the tracked face at ~52 px
    except TypeError:  # a detector without the search-range keywords
        found = detector.detect(roi)
    if not found:
        return None
    found = [b.shifted(x0, y0) for b in found]

    def closeness(b: FaceBox) -> float:
        bx, by = b.center
        return math.hypot(bx - cx, by - cy) / side - iou(b, ref)

    return min(found, key=closeness)


# --- audio -------------------------------------------------------------------------------------
def audio_clips(wav: np.ndarray, n_clips: int, clip_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, L) clips and their (K,) real-audio mask, following the rule in the module docstring."""
    n = int(wav.shape[0])
    clips = np.zeros((n_clips, clip_len), dtype=np.float32)
    mask = np.zeros(n_clips, dtype=bool)
    if n == 0:
        return clips, mask
    if n >= n_clips * clip_len:
        starts = np.linspace(0, n - clip_len, n_clips).round().astype(int)
    else:
        starts = np.arange(n_clips) * clip_len
    for k, s in enumerate(starts):
        if s >= n:
            continue
        seg = wav[s : s + clip_len]
        clips[k, : seg.shape[0]] = seg
        mask[k] = True
    return clips, mask


def _finish_audio(out: MediaInput, wav: np.ndarray, cfg: MediaConfig) -> None:
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if not np.all(np.isfinite(wav)):
        wav = np.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)
        out.warnings.append("audio had non-finite samples (set to 0)")
    out.audio = wav
    out.audio_clips, out.audio_clip_mask = audio_clips(wav, cfg.n_clips, int(round(cfg.clip_seconds * cfg.sample_rate)))
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak < _SILENCE_PEAK:
        out.warnings.append("audio is silent" if wav.size else "audio track is empty")
    if out.info.get("audio") is not None:
        out.info["audio"]["peak"] = round(peak, 6)


def _channels(waveform) -> int:
    a = np.asarray(waveform)
    return 1 if a.ndim == 1 else int(min(a.shape))


def _as_mono_float(waveform) -> np.ndarray:
    a = np.asarray(waveform)
    if a.ndim == 2:
        ch_axis = 0 if a.shape[0] <= a.shape[1] else 1
        a = a.mean(axis=ch_axis) if a.dtype.kind == "f" else a.astype(np.float64).mean(axis=ch_axis).astype(a.dtype)
    elif a.ndim != 1:
        raise MediaError("<arrays>", f"waveform must be (N,), (C,N) or (N,C), got shape {a.shape}")
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        scale = float(max(abs(info.min), info.max))
        a = a.astype(np.float32) / scale
    return np.ascontiguousarray(a, dtype=np.float32)


def _resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out or wav.size == 0:
        return wav.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr_in, sr_out)
    return resample_poly(wav.astype(np.float64), sr_out // g, sr_in // g).astype(np.float32)


def _as_uint8_rgb(arr: np.ndarray, where: str) -> np.ndarray:
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


def _uniform_indices(n: int, k: int) -> np.ndarray:
    """k indices into n items at the centres of k equal segments (repeats when n < k)."""
    return np.minimum(((np.arange(k) + 0.5) * n / k).astype(int), n - 1)


# --- writers (tests, generated corpora) ---------------------------------------------------------
_DEFAULT_CODECS = {
    ".mp4": ("h264", "aac"),
    ".m4v": ("h264", "aac"),
    ".mov": ("h264", "aac"),
    ".mkv": ("hevc", "aac"),
    ".webm": ("libvpx-vp9", "libopus"),
    ".avi": ("mpeg4", "mp3"),
    ".wav": (None, "pcm_s16le"),
    ".flac": (None, "flac"),
    ".ogg": (None, "libopus"),
    ".opus": (None, "libopus"),
    ".m4a": (None, "aac"),
    ".mp3": (None, "mp3"),
}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Sequence[np.ndarray] | None,
    fps: float = 25.0,
    waveform: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    channels: int = 1,
    crf: int | None = None,
) -> Path:
    """Write frames (T,H,W,3 uint8 RGB) and/or a waveform ((N,) or (C,N) float in [-1,1]) to a
    media file; codecs default by extension (mp4/mov: h264+aac, mkv: hevc+aac, webm: vp9+opus,
    avi: mpeg4+mp3, wav/flac/ogg/m4a/mp3 audio). Written atomically."""
    import av
    from fractions import Fraction

    from ..storage import atomic_path

    path = Path(path)
    ext = path.suffix.lower()
    dv, da = _DEFAULT_CODECS.get(ext, ("h264", "aac"))
    vcodec = video_codec or dv
    acodec = audio_codec or da
    if frames is not None and vcodec is None:
        raise ValueError(f"{path.name}: {ext} holds audio only")
    with atomic_path(path) as tmp:
        fmt = {".m4a": "ipod", ".opus": "ogg"}.get(ext)
        out = av.open(str(tmp), "w", format=fmt)
        try:
            vs = as_ = None
            if frames is not None:
                arr = _as_uint8_rgb(np.asarray(frames) if isinstance(frames, np.ndarray) else np.stack(frames), str(path))
                if arr.ndim == 3:
                    arr = arr[None]
                h, w = arr.shape[1:3]
                if vcodec in ("h264", "libx264", "hevc", "libx265", "mpeg4", "libvpx-vp9", "vp9") and (h % 2 or w % 2):
                    arr = arr[:, : h - h % 2, : w - w % 2]
                    h, w = arr.shape[1:3]
                vs = out.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
                vs.width, vs.height = w, h
                vs.pix_fmt = "yuvj420p" if vcodec == "mjpeg" else "yuv420p"
                opts = {}
                if vcodec in ("hevc", "libx265"):
                    opts["x265-params"] = "log-level=error"
                if crf is not None and vcodec in ("h264", "libx264", "hevc", "libx265"):
                    opts["crf"] = str(crf)
                if opts:
                    vs.options = opts
            if waveform is not None:
                wav = np.asarray(waveform, dtype=np.float32)
                if wav.ndim == 1:
                    wav = np.repeat(wav[None], channels, axis=0) if channels > 1 else wav[None]
                if wav.shape[0] > wav.shape[1]:
                    wav = wav.T
                nch = wav.shape[0]
                sr = int(sample_rate)
                if acodec in ("libopus", "opus") and sr not in _OPUS_RATES:
                    wav = np.stack([_resample(c, sr, 48000) for c in wav])
                    sr = 48000
                layout = "mono" if nch == 1 else "stereo"
                as_ = out.add_stream(acodec, rate=sr, layout=layout)
            if vs is not None:
                for img in arr:
                    for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                        out.mux(pkt)
                for pkt in vs.encode():
                    out.mux(pkt)
            if as_ is not None:
                ctx = as_.codec_context
                fmt_name = ctx.format.name if ctx.format else "fltp"
                frame_size = ctx.frame_size or 1024
                for s0 in range(0, wav.shape[1], frame_size):
                    chunk = np.clip(wav[:, s0 : s0 + frame_size], -1.0, 1.0)
                    fr = _audio_frame(chunk, fmt_name, layout)
                    fr.sample_rate = sr
                    fr.pts = s0
                    for pkt in as_.encode(fr):
                        out.mux(pkt)
                for pkt in as_.encode():
                    out.mux(pkt)
        finally:
            out.close()
    return path


def write_audio(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, *, codec: str | None = None, channels: int = 1) -> Path:
    """Write a waveform to a sound file (codec by extension, see `write_video`)."""
    return write_video(path, None, waveform=waveform, sample_rate=sample_rate, audio_codec=codec, channels=channels)


def _audio_frame(chunk: np.ndarray, fmt_name: str, layout: str):
    import av

    planar = fmt_name.endswith("p")
    base = fmt_name[:-1] if planar else fmt_name
    if base == "s16":
        data = (chunk * 32767.0).round().astype(np.int16)
    elif base == "s32":
        data = (chunk.astype(np.float64) * 2147483647.0).round().astype(np.int32)
    elif base == "dbl":
        data = chunk.astype(np.float64)
    else:
        data = chunk.astype(np.float32)
    if not planar:
        data = data.T.reshape(1, -1)
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt_name, layout=layout)
