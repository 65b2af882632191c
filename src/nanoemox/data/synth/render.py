"""One SynthAffect sample end to end: latent state -> words, speech, face video -> mp4 + record,
then the probe features read back from the written file (which also proves it decodes)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ...storage import atomic_path
from ..schema import AffectSample
from . import face, text, voice
from .latent import EMOTIONS, INTENTS, NEGATIVE, sample_latent, ov_labels

SOURCE = "synthaffect"


@dataclass(frozen=True)
class Job:
    seed: int
    index: int
    emotion: str
    intent: str
    out_dir: str
    size: int = 160
    fps: int = 10


def sample_id(index: int) -> str:
    return f"sa{index:06d}"


def write_mp4(path: str | os.PathLike, frames: np.ndarray, audio: np.ndarray, fps: int, sr: int = voice.SAMPLE_RATE) -> None:
    """h264 (yuv420p) + AAC mono mp4, written atomically; byte-identical for the same frames and audio."""
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = "yuv420p"
            # zerolatency: no frame lookahead / macroblock tree. With them the same frames gave 2-5
            # different bitstreams in 8 encodes (two first `demo` runs trained on different pixels);
            # with it 24 of 24 encodes were byte-identical
            vs.options = {"threads": "1", "preset": "veryfast", "crf": "26", "tune": "zerolatency"}
            aus = out.add_stream("aac", rate=sr)
            aus.layout = "mono"
            for i, img in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = i
                vf.time_base = Fraction(1, fps)
                for pkt in vs.encode(vf):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
            chunk = 1024
            for start in range(0, len(audio), chunk):
                piece = audio[start:start + chunk]
                if len(piece) < chunk:
                    piece = np.pad(piece, (0, chunk - len(piece)))
                af = av.AudioFrame.from_ndarray(piece[None, :].astype(np.float32), format="fltp", layout="mono")
                af.sample_rate = sr
                af.pts = start
                af.time_base = Fraction(1, sr)
                for pkt in aus.encode(af):
                    out.mux(pkt)
            for pkt in aus.encode():
                out.mux(pkt)


def generate_sample(job: Job) -> dict[str, Any]:
    """Render one sample; returns {"record": manifest dict, "features": probe features, "stats": ...}."""
    rng = np.random.default_rng([job.seed, job.index])
    lat = sample_latent(job.index, job.emotion, job.intent, rng)
    words, emo_word = text.transcript(lat, rng)
    hist = text.history(rng)
    voice_only = lat.cue_modalities[:1] == ["voice"] and "face" not in lat.cue_modalities
    vp = voice.sample_voice(lat.emotion, lat.intensity, lat.voice_expressive, voice_only, rng)
    audio = voice.speak(words, vp, rng)
    n_frames = max(1, math.ceil(len(audio) / voice.SAMPLE_RATE * job.fps))
    style = face.sample_style(rng, job.size, n_frames)
    frames = face.render_clip(style, lat.emotion, lat.intensity, lat.face_expressive, voice.envelope(audio, n_frames), job.fps, rng)

    sid = sample_id(job.index)
    rel = f"media/{sid}.mp4"
    write_mp4(Path(job.out_dir) / rel, frames, audio, job.fps)

    clues = {
        "face": face.face_clues(lat.emotion, lat.intensity, lat.face_expressive),
        "voice": voice.voice_clues(lat.emotion, lat.voice_expressive),
        "text": text.text_clues(lat, emo_word),
    }
    sarcastic = lat.text_mode == "misleading" and lat.emotion in NEGATIVE
    record = AffectSample(
        id=sid,
        source=SOURCE,
        video=rel,
        transcript=words,
        history=hist,
        emotion=lat.emotion,
        sentiment_score=lat.sentiment_score,
        ov_labels=ov_labels(lat, sarcastic),
        reason=text.reason(lat, clues),
        intent=lat.intent,
        response=text.response(lat),
        chain_of_empathy=text.chain_of_empathy(lat),
        candidates={"mer": list(EMOTIONS), "mir": list(INTENTS)},
        clues=clues,
        meta={
            "latent": lat.to_dict(),
            "cue_modalities": lat.cue_modalities,
            "text_mode": lat.text_mode,
            "sarcastic": sarcastic,
            "voice": vp.to_dict(),
            # what the renderers were asked to draw and speak (the oracle reads only this and the words)
            "rendered": {
                "face": {"expression": lat.emotion if lat.face_expressive else "neutral", "intensity": lat.intensity},
                "voice": {"profile": lat.emotion if lat.voice_expressive else "neutral",
                          "intensity": "strong" if (lat.intensity == "strong" or voice_only) else "mild"},
            },
            "face": {"skin": list(style.skin), "face_height": round(2 * style.b / job.size, 3)},
            "duration_s": round(len(audio) / voice.SAMPLE_RATE, 3),
            "fps": job.fps,
            "frames": n_frames,
            "size": job.size,
        },
    ).to_dict()
    features, stats = read_back(Path(job.out_dir) / rel)
    stats["lexicon"] = text.lexicon_predict(words)
    return {"record": record, "features": features, "stats": stats}


def read_back(path: Path, n_frames: int = 8) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Decode the written mp4 with PyAV and compute the face-only and voice-only probe features:
    HOG of the Haar-detected face crop (8 uniformly sampled frames) and prosody statistics."""
    import av
    import cv2
    from skimage.feature import hog

    from ..faces import get_detector

    with av.open(str(path)) as c:
        decoded = list(c.decode(video=0))
    picks = np.linspace(0, len(decoded) - 1, n_frames).round().astype(int)
    frames = [decoded[i].to_ndarray(format="rgb24") for i in picks]
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
        sr = c.streams.audio[0].rate
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    det = get_detector("haar")
    hogs, found = [], 0
    for img in frames:
        boxes = det.detect(img, min_face=0.2 * min(img.shape[:2]))
        if boxes:
            found += 1
            b = boxes[0]
            crop = img[max(b.y, 0):b.y + b.h, max(b.x, 0):b.x + b.w]
        else:  # fall back to the centre of the frame
            h, w = img.shape[:2]
            crop = img[h // 6:5 * h // 6, w // 6:5 * w // 6]
        grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_AREA)
        hogs.append(hog(grey, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2)))
    features = {
        "face": np.mean(hogs, axis=0).astype(np.float32),
        "voice": voice.prosody_features(audio, sr),
    }
    stats = {
        "frames_checked": int(len(picks)),
        "faces_found": int(found),
        "decoded_frames": len(decoded),
        "audio_s": round(len(audio) / sr, 3),
        "speech_rms_db": float(20 * np.log10(np.sqrt(np.mean(audio**2)) + 1e-9)) if len(audio) else -200.0,
    }
    return features, stats
