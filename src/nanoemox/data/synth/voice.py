"""Speech: espeak-ng speaks the transcript with emotion-dependent prosody.

Each emotion has a prosody profile (pitch, pitch range, rate, amplitude, word gap, tremolo). A
sample moves from the neutral profile towards its emotion's profile by its intensity, then gets
per-sample jitter and a random voice variant, so nearby emotions overlap in prosody while the
extremes (loud fast anger, slow quiet sadness, high wide surprise) stay distinctive.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ...errors import NanoEmoXError

SAMPLE_RATE = 16000
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4")
RANGES = ("x-low", "low", "medium", "high", "x-high")


@dataclass(frozen=True)
class Prosody:
    pitch: float  # espeak -p, 0..99
    range: float  # index into RANGES, 0..4
    rate: float  # words per minute
    amplitude: float  # espeak -a, 0..200
    gap: float = 0.0  # extra pause between words, 10 ms units
    tremolo: float = 0.0  # amplitude-modulation depth (fear)


PROFILES: dict[str, Prosody] = {
    "neutral": Prosody(pitch=45, range=2, rate=190, amplitude=90),
    "happy": Prosody(pitch=70, range=4, rate=210, amplitude=130),
    "angry": Prosody(pitch=52, range=3, rate=240, amplitude=190),
    "sad": Prosody(pitch=18, range=0, rate=165, amplitude=50),
    "fear": Prosody(pitch=80, range=1, rate=245, amplitude=80, tremolo=0.45),
    "surprise": Prosody(pitch=92, range=4, rate=200, amplitude=150),
    "disgust": Prosody(pitch=28, range=1, rate=165, amplitude=105),
}
VOICE_CLUES: dict[str, tuple[str, ...]] = {
    "neutral": ("an even, steady voice",),
    "happy": ("a bright, high voice", "a lively, varied pitch"),
    "angry": ("a loud, sharp voice", "fast speech"),
    "sad": ("a low, quiet voice", "slow speech"),
    "fear": ("a high, trembling voice", "hurried speech"),
    "surprise": ("a very high voice", "a wide, rising pitch"),
    "disgust": ("a low, flat voice", "slow, drawn-out words"),
}


def voice_clues(emotion: str, expressive: bool) -> list[str]:
    return list(VOICE_CLUES[emotion if expressive else "neutral"])


@dataclass(frozen=True)
class VoiceParams:
    variant: str
    pitch: int
    range: str
    rate: int
    amplitude: int
    gap: int
    tremolo: float

    def to_dict(self) -> dict:
        return asdict(self)


def sample_voice(emotion: str, intensity: str, expressive: bool, voice_only: bool, rng: np.random.Generator) -> VoiceParams:
    n, e = PROFILES["neutral"], PROFILES[emotion if expressive else "neutral"]
    # voice-only samples keep the full profile (the voice is their only cue) and less jitter
    k = 1.0 if (intensity == "strong" or voice_only) else 0.65
    jit = 0.5 if voice_only else 1.0
    lerp = lambda a, b: a + k * (b - a)  # noqa: E731
    return VoiceParams(
        variant=VARIANTS[int(rng.integers(len(VARIANTS)))],
        pitch=int(np.clip(round(lerp(n.pitch, e.pitch) + jit * rng.uniform(-9, 9)), 0, 99)),
        range=RANGES[int(np.clip(round(lerp(n.range, e.range) + jit * rng.uniform(-0.7, 0.7)), 0, 4))],
        rate=int(np.clip(round(lerp(n.rate, e.rate) + jit * rng.uniform(-14, 14)), 110, 280)),
        amplitude=int(np.clip(round(lerp(n.amplitude, e.amplitude) + jit * rng.uniform(-15, 15)), 20, 200)),
        gap=int(round(lerp(n.gap, e.gap))),
        tremolo=float(round(lerp(n.tremolo, e.tremolo), 3)),
    )


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise NanoEmoXError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng); SynthAffect needs it for speech")
    return exe


def speak(text: str, params: VoiceParams, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 speech at 16 kHz, with a little leading/trailing silence and room noise."""
    ssml = f'<speak><prosody range="{params.range}">{_escape(text)}</prosody></speak>'
    with tempfile.TemporaryDirectory(prefix="nanoemox-tts-") as tmp:
        wav = os.path.join(tmp, "speech.wav")
        cmd = [
            espeak_binary(), "-m", "-v", f"en-us+{params.variant}", "-p", str(params.pitch),
            "-s", str(params.rate), "-a", str(params.amplitude), "-g", str(params.gap), "-w", wav, ssml,
        ]
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
        if proc.returncode != 0 or not os.path.exists(wav):
            raise NanoEmoXError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()[:200]}")
        x, sr = sf.read(wav, dtype="float32", always_2d=False)
    if x.ndim > 1:
        x = x.mean(axis=1)
    g = np.gcd(int(sr), SAMPLE_RATE)
    x = resample_poly(x, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    if params.tremolo > 0:  # a trembling voice: fast amplitude modulation
        t = np.arange(len(x)) / SAMPLE_RATE
        x *= 1.0 - params.tremolo * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(6.0, 8.0) * t))
    lead, tail = int(0.1 * SAMPLE_RATE), int(0.15 * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(tail, np.float32)])
    x += rng.normal(0, 10 ** (-3.3), len(x)).astype(np.float32)  # faint room noise
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Speech level per video frame in [0, 1] (drives the mouth)."""
    if n_frames <= 0:
        return np.zeros(0, np.float32)
    edges = np.linspace(0, len(audio), n_frames + 1).astype(int)
    rms = np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    peak = rms.max()
    return (rms / peak).astype(np.float32) if peak > 0 else rms.astype(np.float32)


def prosody_features(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Simple voice-only probe features: pitch level/spread/slope, loudness, pauses, tremor, rate."""
    frame, hop = int(0.04 * sr), int(0.02 * sr)
    if len(audio) < frame:
        return np.zeros(13, np.float32)
    idx = np.arange(0, len(audio) - frame, hop)
    frames = np.stack([audio[i:i + frame] for i in idx])
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-8
    db = 20 * np.log10(rms)
    voiced = db > db.max() - 30
    f0 = np.array([_f0(f, sr) if v else 0.0 for f, v in zip(frames, voiced)])
    has = f0 > 0
    lf0 = np.log(f0[has]) if has.sum() > 2 else np.zeros(3)
    slope = np.polyfit(np.arange(len(lf0)), lf0, 1)[0] * len(lf0) if len(lf0) > 2 else 0.0
    vr = rms[voiced]
    env_mod = np.std(np.diff(db[voiced])) if voiced.sum() > 2 else 0.0
    onsets = np.sum(np.diff(voiced.astype(int)) == 1)
    dur = voiced.sum() * hop / sr
    spec = np.abs(np.fft.rfft(frames[voiced] * np.hanning(frame), axis=1))
    freqs = np.fft.rfftfreq(frame, 1.0 / sr)
    centroid = float(np.mean((spec * freqs).sum(1) / (spec.sum(1) + 1e-8))) if voiced.any() else 0.0
    q10, q50, q90 = np.percentile(lf0, [10, 50, 90])
    return np.array([
        q50, np.std(lf0), q90 - q10, slope,
        20 * np.log10(np.mean(vr) + 1e-8), 20 * np.log10(np.max(rms)), np.std(db[voiced]),
        voiced.mean(), onsets / max(dur, 1e-3), env_mod, dur, len(audio) / sr, np.log(centroid + 1.0),
    ], np.float32)


def _f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 500.0) -> float:
    x = x - x.mean()
    spec = np.fft.rfft(x, 2 * len(x))
    ac = np.fft.irfft(spec * np.conj(spec))[: len(x)]
    if ac[0] <= 0:
        return 0.0
    lo, hi = int(sr / fmax), min(int(sr / fmin), len(ac) - 1)
    if hi <= lo:
        return 0.0
    lag = lo + int(np.argmax(ac[lo:hi]))
    return sr / lag if ac[lag] / ac[0] > 0.5 else 0.0
