"""Media preprocessing time per clip vs a PyAV decode-only pass of the same clip.

    .venv/bin/python benchmarks/media_speed.py [--repeats 5] [--out DIR] [FILES...]

Without FILES it writes test clips first (the astronaut photo moving over a textured background
with film grain, so the encoder has real work to do, plus a voice-like tone): 640x360 3 s h264,
1280x720 5 s h264, 1280x720 4 s hevc, 640x360 3 s vp9, 1920x1080 4 s h264, all 25 fps with
44.1/48 kHz stereo audio.

decode-only: open, frame-threaded decoding of every video and audio packet, nothing else.
load_media: the full pipeline (8 frames at 224 px, face track + 112 px crops, 16 kHz mono audio
and 8 x 2 s clips). The median of the repeats is reported, interleaved so both see the same load.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clips(out: Path) -> list[Path]:
    import cv2
    from skimage import data

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from mediakit import write_video  # the tests' media writers

    ast = data.astronaut()
    specs = [
        ("360p_3s.mp4", 640, 360, 3, 44100, "h264"),
        ("720p_5s.mp4", 1280, 720, 5, 44100, "h264"),
        ("720p_4s.mkv", 1280, 720, 4, 48000, "hevc"),
        ("360p_3s.webm", 640, 360, 3, 48000, "libvpx-vp9"),
        ("1080p_4s.mp4", 1920, 1080, 4, 44100, "h264"),
    ]
    paths = []
    rng = np.random.default_rng(0)
    for name, W, H, secs, sr, vcodec in specs:
        path = out / name
        paths.append(path)
        if path.exists():
            continue
        n = int(secs * 25)
        bg = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
        face = cv2.resize(ast, (H // 2, H // 2))
        frames = np.empty((n, H, W, 3), np.uint8)
        for i in range(n):
            f = bg.copy()
            x = int((W - H // 2) * (0.3 + 0.4 * i / n))
            f[H // 4 : H // 4 + H // 2, x : x + H // 2] = face
            frames[i] = np.clip(f.astype(np.int16) + rng.normal(0, 6, f.shape).astype(np.int16), 0, 255)
        t = np.arange(int(secs * sr)) / sr
        wav = np.stack([0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(3 * t)), 0.2 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
        write_video(path, frames, 25, wav, sr, video_codec=vcodec, channels=2)
    return paths


def decode_only(path: Path) -> int:
    import av

    n = 0
    with av.open(str(path)) as c:
        vs = list(c.streams.video[:1])
        aus = list(c.streams.audio[:1])
        for s in vs:
            s.thread_type = "AUTO"
        for pkt in c.demux(*(vs + aus)):
            for _ in pkt.decode():
                n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="where to write the test clips (default: a temp folder)")
    ap.add_argument("--no-skip-nonref", action="store_true", help="decode every frame (MediaConfig.skip_nonref=False)")
    ap.add_argument("--no-faces", action="store_true", help="skip face detection (MediaConfig.detect_faces=False)")
    args = ap.parse_args(argv)

    from nanoemox.data.media import MediaConfig, load_media

    out = Path(args.out or tempfile.mkdtemp(prefix="nanoemox-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    files = [Path(f) for f in args.files] or make_clips(out)
    cfg = MediaConfig(skip_nonref=not args.no_skip_nonref, detect_faces=not args.no_faces)
    load_media(files[0], cfg)  # warm up: imports, detector
    print(f"{'clip':18s} {'decode-only':>12s} {'load_media':>11s} {'ratio':>6s}  faces")
    ratios = []
    for f in files:
        b, p = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            decode_only(f)
            b.append(time.perf_counter() - t)
            t = time.perf_counter()
            m = load_media(f, cfg)
            p.append(time.perf_counter() - t)
        mb, mp = statistics.median(b), statistics.median(p)
        ratios.append(mp / mb)
        faces = int(m.face_mask.sum()) if m.face_mask is not None else "-"
        print(f"{f.name:18s} {mb * 1000:9.1f} ms {mp * 1000:8.1f} ms {mp / mb:6.2f}  {faces}/8")
    print(f"geometric mean ratio: {float(np.exp(np.mean(np.log(ratios)))):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
