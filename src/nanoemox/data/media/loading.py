"""Entry points: a file, folder or in-memory arrays -> `MediaInput`. Pictures and frame folders
are read here; audio/video containers go to `decoding`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import MediaError
from .audio import as_mono_float, channels_of, finish_audio, resample
from .decoding import load_av
from .frames import as_uint8_rgb, finish_video, to_work, uniform_indices
from .types import IMAGE_EXTS, SAMPLE_RATE, MediaConfig, MediaInput, sniff


def load_media(path: str | os.PathLike, cfg: MediaConfig | None = None) -> MediaInput:
    """Decode a video, sound file, picture or folder of frame pictures (see the package docstring)."""
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
    kind = sniff(head)
    if kind == "image" or (kind is None and p.suffix.lower() in IMAGE_EXTS):
        return _load_image(p, cfg, head)
    return load_av(p, cfg, head)


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
        arr = as_uint8_rgb(arr, path or "<arrays>")
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
        idx = uniform_indices(n, cfg.n_frames)
        images = [to_work(arr[i]) for i in sorted(set(idx.tolist()))]
        uniq = {v: k for k, v in enumerate(sorted(set(idx.tolist())))}
        out.frames_repeated = cfg.n_frames - len(uniq)
        if fps:
            out.frame_times = idx.astype(np.float64) / float(fps)
            out.duration_s = n / float(fps)
        elif still:
            out.frame_times = np.zeros(cfg.n_frames)
        out.info["video"] = {"width": int(w), "height": int(h), "fps": fps, "codec": "raw", "frames_decoded": int(n)}
        finish_video(out, images, [uniq[i] for i in idx.tolist()], cfg)
    if waveform is not None:
        wav = as_mono_float(waveform)
        if sample_rate != cfg.sample_rate:
            wav = resample(wav, int(sample_rate), cfg.sample_rate)
        wav = wav[: int(cfg.max_seconds * cfg.sample_rate)]
        out.info["audio"] = {"codec": "raw", "sample_rate": int(sample_rate), "channels": channels_of(waveform), "resampled_rate": cfg.sample_rate}
        finish_audio(out, wav, cfg)
        out.duration_s = max(out.duration_s or 0.0, len(wav) / float(cfg.sample_rate))
    return out


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
    finish_video(out, [to_work(rgb)], [0] * cfg.n_frames, cfg)
    return out


def _load_frame_folder(p: Path, cfg: MediaConfig) -> MediaInput:
    files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")), key=_natural_key)
    if not files:
        raise MediaError(str(p), "folder holds no frame images")
    n = len(files)
    idx = uniform_indices(n, cfg.n_frames)
    uniq_ids = sorted(set(idx.tolist()))
    images = []
    size = None
    for i in uniq_ids:
        rgb = _read_picture(files[i], cfg)
        size = rgb.shape[:2]
        images.append(to_work(rgb))
    remap = {v: k for k, v in enumerate(uniq_ids)}
    fps = cfg.folder_fps
    out = MediaInput(
        path=str(p),
        frame_times=idx.astype(np.float64) / fps,
        frames_repeated=cfg.n_frames - len(uniq_ids),
        duration_s=n / fps,
    )
    out.info = {"container": "frames", "video": {"width": size[1], "height": size[0], "fps": fps, "codec": "images", "frames_decoded": n}}
    finish_video(out, images, [remap[i] for i in idx.tolist()], cfg)
    return out


def _natural_key(f: Path):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f.name)]
