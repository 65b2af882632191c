"""Audio: the clip layout, mono float conversion, resampling and silence checks."""
from __future__ import annotations

import numpy as np

from ...errors import MediaError
from .types import MediaConfig, MediaInput

_SILENCE_PEAK = 1e-3  # -60 dBFS: below this the whole track counts as silent


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


def finish_audio(out: MediaInput, wav: np.ndarray, cfg: MediaConfig) -> None:
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if not np.isfinite(peak):  # a NaN or infinite sample (the peak is one then)
        wav = np.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)
        out.warnings.append("audio had non-finite samples (set to 0)")
        peak = float(np.max(np.abs(wav)))
    out.audio = wav
    out.audio_clips, out.audio_clip_mask = audio_clips(wav, cfg.n_clips, int(round(cfg.clip_seconds * cfg.sample_rate)))
    if peak < _SILENCE_PEAK:
        out.warnings.append("audio is silent" if wav.size else "audio track is empty")
    if out.info.get("audio") is not None:
        out.info["audio"]["peak"] = round(peak, 6)


def channels_of(waveform) -> int:
    a = np.asarray(waveform)
    return 1 if a.ndim == 1 else int(min(a.shape))


def as_mono_float(waveform) -> np.ndarray:
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


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out or wav.size == 0:
        return wav.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr_in, sr_out)
    return resample_poly(wav.astype(np.float64), sr_out // g, sr_in // g).astype(np.float32)
