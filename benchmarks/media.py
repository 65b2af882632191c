"""Media preprocessing per clip (decode + frame sampling + face crops + audio clips + encoder input
tensors) vs PyAV decoding every video and audio frame of the same clip and nothing else, on small
SynthAffect clips and on 720p clips, all cases interleaved in one run. The face cases compare the
default track (`face_follow="match"`: detect in an anchor frame, follow by template matching) with
the detector in every sampled frame (`"detect"`, the previous pipeline) and with no faces at all."""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from .common import Context, Table, ratios, spread, target

TITLE = "media: preprocessing per clip vs PyAV decode-only"
HD_CLIPS = 2  # 1280x720, 4 s, 25 fps h264 + 44.1 kHz stereo AAC
HD_SECONDS = 4


def decode_only(path: str, one_thread: bool = False) -> int:
    """The floor any preprocessing pays: demux + decode of every video and audio frame, with
    PyAV's default threads (or, with `one_thread`, one decoding thread per stream)."""
    import av

    n = 0
    with av.open(path) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        if one_thread:
            for s in streams:
                s.thread_count = 1
        for _frame in container.decode(*streams):
            n += 1
    return n


def make_hd_clips(out: Path, n: int = HD_CLIPS, seconds: int = HD_SECONDS) -> list[str]:
    """720p talking-head stand-ins written with PyAV: the astronaut photo (a real face) drifting over
    a smooth textured background with film grain, so the encoder has real work to do, and a
    two-tone stereo signal."""
    import av
    import cv2
    from skimage import data

    out.mkdir(parents=True, exist_ok=True)
    W, H, fps, sr = 1280, 720, 25, 44100
    face = cv2.resize(data.astronaut(), (H // 2, H // 2), interpolation=cv2.INTER_AREA)
    paths = []
    for k in range(n):
        path = out / f"hd_{k}.mp4"
        paths.append(str(path))
        rng = np.random.default_rng(k)
        bg = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
        t = np.arange(seconds * sr) / sr
        wav = np.stack([0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(3 * t)), 0.2 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
        with av.open(str(path), "w") as c:
            vs = c.add_stream("h264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
            aus = c.add_stream("aac", rate=sr, layout="stereo")
            for i in range(seconds * fps):
                f = bg.copy()
                x = int((W - H // 2) * (0.2 + 0.5 * i / (seconds * fps)))
                f[H // 4 : H // 4 + H // 2, x : x + H // 2] = face
                f = np.clip(f.astype(np.int16) + rng.normal(0, 6, f.shape).astype(np.int16), 0, 255).astype(np.uint8)
                for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
            step = aus.codec_context.frame_size or 1024
            for s0 in range(0, wav.shape[1], step):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, s0 : s0 + step]), format="fltp", layout="stereo")
                fr.sample_rate, fr.pts = sr, s0
                for pkt in aus.encode(fr):
                    c.mux(pkt)
            for pkt in aus.encode():
                c.mux(pkt)
    return paths


def run(ctx: Context) -> list[Table]:
    from nanoemox.data.media import load_media
    from nanoemox.modeling.presets import get_preset
    from nanoemox.modeling.processing import NanoEmoXProcessor

    config = get_preset(ctx.preset)
    processor = NanoEmoXProcessor(config, _tokenizer(config))
    cfgs = {
        "match": processor.media_config(),
        "detect": processor.media_config(face_follow="detect"),
        "no_faces": processor.media_config(detect_faces=False),
    }
    sets = {"synth": ctx.corpus()["clips"], "hd": make_hd_clips(ctx.workdir / "hd")}
    threads = _fresh_threads()

    def preprocess(clips, cfg):
        for p in clips:
            media = load_media(p, cfg)
            processor.media_tensors(media, processor.present_modalities(media))

    def decode(clips, one_thread=False):
        for p in clips:
            decode_only(p, one_thread)

    cases = {}
    for s, clips in sets.items():
        cases[f"{s}/decode"] = lambda clips=clips: decode(clips)
        cases[f"{s}/decode1"] = lambda clips=clips: decode(clips, True)
        for name, cfg in cfgs.items():
            cases[f"{s}/{name}"] = lambda clips=clips, cfg=cfg: preprocess(clips, cfg)
    wall, cpu = _interleave(cases, ctx.repeats)

    t = Table(TITLE, ["clips", "case", "CPU-time ratio to decode-only, median [min..max]", "wall-time ratio", "target (CPU)"])
    labels = {"match": "preprocess (faces: anchor + template matching)", "detect": "preprocess, detector in every sampled frame (before)",
              "no_faces": "preprocess without face detection (where the rest goes)"}
    for s, clips in sets.items():
        what = f"{len(clips)} SynthAffect 160 px" if s == "synth" else f"{len(clips)} x 1280x720 {HD_SECONDS} s"
        for name, label in labels.items():
            r = ratios(cpu[f"{s}/{name}"], cpu[f"{s}/decode"])
            goal = target(statistics.median(r), 2.0, "<=") if name == "match" else "-"
            t.rows.append([what, label, spread(r, unit="x"), spread(ratios(wall[f"{s}/{name}"], wall[f"{s}/decode"]), unit="x"), goal])
        per_clip = statistics.median(cpu[f"{s}/decode"]) / len(clips) * 1000
        t.notes.append(f"{what}: decode-only {per_clip:.1f} ms of CPU a clip (median), "
                       f"{decode_only(clips[0])} video+audio frames decoded per clip")
        one = ratios(cpu[f"{s}/match"], cpu[f"{s}/decode1"])
        t.notes.append(f"{what}: decode-only on one decoding thread {statistics.median(cpu[f'{s}/decode1']) / len(clips) * 1000:.1f} ms "
                       f"of CPU a clip; preprocessing (faces) is {spread(one, unit='x')} of that (preprocessing decodes "
                       "pictures under 320x240 on one thread, larger ones frame-threaded)")
    m = cfgs["match"]
    t.notes.append("CPU time (this process, all its threads) is the primary measure: on a shared machine the wall-time ratios "
                   "swing with other processes' load while the CPU-time ratios hold")
    t.notes.append(f"thread pools as in a fresh process ({threads}), reset after generating the clips in this process")
    t.notes.append(f"{ctx.repeats} interleaved repetitions after a warm-up, every case in every repetition; preprocessing = load_media "
                   f"({m.n_frames} frames at {m.frame_size}px, faces at {m.face_size}px, {m.n_clips} x {m.clip_seconds:g} s audio) "
                   "+ the processor's encoder tensors; decode-only = PyAV decoding every video and audio frame of the clip")
    return [t]


def _interleave(cases, repeats: int, warmup: int = 1) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per call of each case, `repeats` times, the order alternating every
    repetition (as `common.interleave`, which times wall clock only)."""
    import time

    names = list(cases)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            cases[n]()
            if r >= warmup:
                wall[n].append(time.perf_counter() - w0)
                cpu[n].append(time.process_time() - c0)
    return wall, cpu


def _fresh_threads() -> str:
    """Set this process's thread pools to a fresh process's defaults, as a server or a batch job
    has them. Generating the corpus here limits OpenMP, BLAS and OpenCV to one thread (the synth
    workers' set-up), which hid torch's thread-team cost from this benchmark's earlier runs."""
    import json
    import subprocess
    import sys

    import cv2
    from threadpoolctl import threadpool_limits

    code = ("import json, cv2, torch, numpy; from threadpoolctl import threadpool_info; "
            "print(json.dumps([cv2.getNumThreads(), {i['user_api']: i['num_threads'] for i in threadpool_info()}]))")
    n_cv2, pools = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    cv2.setNumThreads(n_cv2)
    threadpool_limits(limits=pools)
    return ", ".join([f"OpenCV {n_cv2}"] + [f"{k} {v}" for k, v in sorted(pools.items())])


def _tokenizer(config):
    """The processor needs a tokenizer object only for text; media preprocessing never uses it."""
    if config.text.source == "random":
        from nanoemox.modeling.language_model import byte_tokenizer

        return byte_tokenizer()
    return None
