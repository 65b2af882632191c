"""Test-media writers: frames and/or waveforms -> real media files through PyAV, for the tests
(and the media benchmark) to decode. The SynthAffect renderer has its own fixed-settings mp4
writer (`nanoemox.data.synth.render.write_mp4`); these write any codec the tests need."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from nanoemox.data.media import SAMPLE_RATE
from nanoemox.data.media.audio import resample as _resample
from nanoemox.data.media.frames import as_uint8_rgb as _as_uint8_rgb

__all__ = ["write_video", "write_audio"]

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

    from nanoemox.storage import atomic_path

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
