"""Media pipeline on real codecs written at test time with PyAV: videos made from the astronaut
photo (so faces are there to find) with espeak-ng speech, sound files at several rates and channel
counts, pictures, frame folders, every kind of bad input, and `nanoemox inspect`."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mediakit import write_audio, write_video
from nanoemox.data.media import MediaConfig, MediaInput, audio_clips, fit_frame, load_media, media_from_arrays
from nanoemox.errors import MediaError

SR = 16000
FPS = 25
SECONDS = 1.2


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    """The espeak-ng sentence at 16 kHz (espeak-ng itself writes 22.05 kHz)."""
    import soundfile as sf

    wav, sr = sf.read(str(speech_wav), dtype="float32")
    return _resample(wav, sr, SR) if sr != SR else wav


@pytest.fixture(scope="module")
def face_frames(astronaut) -> np.ndarray:
    """30 frames (1.2 s at 25 fps) of the astronaut's head and shoulders drifting sideways."""
    import cv2

    crop = astronaut[0:320, 60:380]
    img = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA)
    return np.stack([np.roll(img, i, axis=1) for i in range(int(SECONDS * FPS))])


VIDEOS = {
    # name: (video codec, audio codec, audio rate, channels)
    "clip.mp4": ("h264", "aac", 44100, 2),
    "clip.mkv": ("hevc", "aac", 48000, 2),
    "clip.webm": ("libvpx-vp9", "libopus", 48000, 2),
    "clip.avi": ("mpeg4", "mp3", 44100, 2),
    "clip_mjpeg.avi": ("mjpeg", None, None, None),
    "clip.mov": ("h264", "aac", 8000, 1),
}
AUDIOS = {
    "speech.wav": ("pcm_s16le", 8000, 1),
    "speech.flac": ("flac", 44100, 2),
    "speech.ogg": ("libopus", 48000, 2),
    "speech.m4a": ("aac", 44100, 1),
    "speech.mp3": ("mp3", 48000, 2),
}
DECODED_NAMES = {"h264": "h264", "hevc": "hevc", "libvpx-vp9": "vp9", "mpeg4": "mpeg4", "mjpeg": "mjpeg",
                 "aac": "aac", "libopus": "opus", "mp3": "mp3", "pcm_s16le": "pcm_s16le", "flac": "flac"}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, face_frames, speech) -> Path:
    d = tmp_path_factory.mktemp("media")
    clip_speech = speech[int(0.1 * SR): int((0.1 + SECONDS) * SR)]
    for name, (vc, ac, rate, ch) in VIDEOS.items():
        wav = None
        if ac:
            wav = _resample(clip_speech, SR, rate)
            if ch == 2:
                wav = np.stack([wav, 0.5 * wav])
        write_video(d / name, face_frames, FPS, wav, rate or SR, video_codec=vc, audio_codec=ac)
    for name, (ac, rate, ch) in AUDIOS.items():
        wav = _resample(speech, SR, rate)
        write_audio(d / name, np.stack([wav, wav]) if ch == 2 else wav, rate, codec=ac)
    return d


def _envelope(x: np.ndarray, sr: int = SR, hop: float = 0.02) -> np.ndarray:
    n = int(sr * hop)
    k = len(x) // n
    return np.sqrt((x[: k * n].reshape(k, n) ** 2).mean(axis=1))


def _best_corr(a: np.ndarray, b: np.ndarray, max_lag: int = 10) -> float:
    """Correlation of two loudness envelopes at the best small lag (codec delays differ)."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        if n > 10:
            best = max(best, float(np.corrcoef(x[:n], y[:n])[0, 1]))
    return best


# --- videos ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VIDEOS))
def test_video_formats(media_dir, speech, name):
    vc, ac, rate, ch = VIDEOS[name]
    m = load_media(media_dir / name)
    assert isinstance(m, MediaInput) and m.path == str(media_dir / name)
    assert m.frames.shape == (8, 224, 224, 3) and m.frames.dtype == np.uint8
    assert m.frames_repeated == 0
    t = m.frame_times
    assert t.shape == (8,) and np.all(np.diff(t) > 0) and 0 <= t[0] < 0.25 and SECONDS - 0.25 < t[-1] <= SECONDS
    # letterboxed square video of a square picture: no black bars, real content
    assert m.frames.mean() > 40
    # faces found and cropped in (nearly) every frame
    assert m.faces.shape == (8, 112, 112, 3) and m.face_mask.dtype == bool
    assert m.face_mask.sum() >= 7, m.face_mask
    assert all(m.faces[i].std() > 10 for i in range(8) if m.face_mask[i])
    assert all(m.faces[i].max() == 0 for i in range(8) if not m.face_mask[i])
    assert m.info["video"]["codec"] == DECODED_NAMES[vc] and m.info["video"]["width"] == 160
    assert abs(m.info["video"]["fps"] - FPS) < 0.01
    assert m.duration_s == pytest.approx(SECONDS, abs=0.15)
    if ac is None:
        assert m.audio is None and m.audio_clips is None and m.info.get("audio") is None
    else:
        assert m.audio.dtype == np.float32 and m.audio.ndim == 1
        assert abs(len(m.audio) / SR - SECONDS) < 0.15
        assert m.audio_clips.shape == (8, 32000) and m.audio_clips.dtype == np.float32
        assert m.audio_clip_mask.tolist() == [True] + [False] * 7  # 1.2 s: one real 2 s clip
        assert m.info["audio"]["codec"] == DECODED_NAMES[ac] and m.info["audio"]["sample_rate"] == rate
        assert m.info["audio"]["channels"] == ch
        ref = _envelope(speech[int(0.1 * SR): int((0.1 + SECONDS) * SR)] * (0.75 if ch == 2 else 1.0))
        assert _best_corr(_envelope(m.audio), ref) > 0.9
    assert not [w for w in m.warnings if "face" in w or "silent" in w], m.warnings


def test_audio_and_video_decoded_once_agree_with_separate_arrays(media_dir, face_frames):
    """The frames handed out are the picture (letterboxed), not something else."""
    m = load_media(media_dir / "clip.mkv")
    expect = fit_frame(face_frames[int(m.frame_times[3] * FPS)], 224)
    assert np.abs(m.frames[3].astype(int) - expect.astype(int)).mean() < 12


@pytest.mark.parametrize("name", list(AUDIOS))
def test_audio_formats(media_dir, speech, name):
    codec, rate, ch = AUDIOS[name]
    m = load_media(media_dir / name)
    assert m.frames is None and m.faces is None and m.face_mask is None
    assert m.audio.dtype == np.float32 and m.audio.ndim == 1
    assert abs(len(m.audio) - len(speech)) < 0.1 * SR
    assert m.duration_s == pytest.approx(len(speech) / SR, abs=0.1)
    assert m.info["audio"]["sample_rate"] == rate and m.info["audio"]["channels"] == ch
    assert m.info["audio"]["codec"] == DECODED_NAMES[codec]
    assert _best_corr(_envelope(m.audio), _envelope(speech)) > 0.9
    n_real = int(np.ceil(len(m.audio) / (2 * SR)))
    assert m.audio_clip_mask.tolist() == [True] * n_real + [False] * (8 - n_real)
    assert m.warnings == []


def test_espeak_speech_wav(speech_wav, speech):
    import soundfile as sf

    m = load_media(speech_wav)
    info = sf.info(str(speech_wav))
    assert m.info["audio"]["sample_rate"] == info.samplerate and m.info["audio"]["codec"] == "pcm_s16le"
    assert abs(len(m.audio) - info.duration * SR) <= 2
    assert _best_corr(_envelope(m.audio), _envelope(speech), max_lag=1) > 0.99
    assert np.abs(m.audio).max() > 0.1 and not m.warnings


@pytest.mark.parametrize("rate,ext", [(8000, "wav"), (44100, "flac"), (48000, "mp3"), (22050, "ogg"), (44100, "m4a")])
def test_resampling_keeps_pitch_and_mixes_channels(tmp_path, rate, ext):
    """Stereo with 440 Hz on the left and 660 Hz on the right: both tones at the right pitch."""
    t = np.arange(int(1.5 * rate)) / rate
    wav = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    path = write_audio(tmp_path / f"tone.{ext}", wav, rate)
    m = load_media(path)
    x = m.audio[int(0.2 * SR): int(1.2 * SR)]
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    peaks = sorted(freqs[np.argsort(spec)[-2:]])
    assert abs(peaks[0] - 440) < 3 and abs(peaks[1] - 660) < 3
    assert 0.1 < np.abs(x).max() < 0.7  # mixed down, not clipped


# --- pictures, folders, arrays -----------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_still_image(tmp_path, astronaut, ext):
    from PIL import Image

    path = tmp_path / f"astronaut.{ext}"
    Image.fromarray(astronaut).save(path)
    m = load_media(path)
    assert m.frames.shape == (8, 224, 224, 3) and m.frames_repeated == 7
    assert all(np.array_equal(m.frames[0], f) for f in m.frames)
    assert m.face_mask.all() and m.audio is None and m.audio_clips is None
    assert m.info["video"]["width"] == 512


def test_letterbox_keeps_the_whole_picture():
    img = np.full((90, 160, 3), 200, np.uint8)
    out = fit_frame(img, 224)
    assert out.shape == (224, 224, 3)
    assert out[:40].max() == 0 and out[-40:].max() == 0 and out[112].min() == 200  # bars top and bottom
    crop = fit_frame(img, 224, "crop")
    assert crop.min() == 200


def test_frame_folder(tmp_path, face_frames):
    from PIL import Image

    d = tmp_path / "00001"
    d.mkdir()
    for i in range(5):
        Image.fromarray(face_frames[i]).save(d / f"{i + 1}.jpg")
    Image.fromarray(face_frames[9]).save(d / "10.jpg")  # natural order: 10 comes last
    m = load_media(d)
    assert m.frames.shape == (8, 224, 224, 3) and m.frames_repeated == 2 and m.face_mask.sum() >= 7
    assert m.frame_times[-1] == pytest.approx(5 / 25)


def test_media_from_arrays(astronaut, face_frames, speech):
    one = media_from_arrays(astronaut)
    assert one.frames.shape == (8, 224, 224, 3) and one.frames_repeated == 7 and one.face_mask.all() and one.audio is None
    seq = media_from_arrays(face_frames, speech, SR, fps=FPS)
    assert seq.frames_repeated == 0 and seq.face_mask.sum() >= 7
    assert seq.frame_times[0] == pytest.approx(0.04) and seq.duration_s == pytest.approx(len(speech) / SR)
    assert np.array_equal(seq.audio, speech)
    # another rate, stereo, int16
    st = (np.stack([speech, speech]).T * 32767).astype(np.int16)  # (N, 2)
    st44 = media_from_arrays(waveform=_resample(speech, SR, 44100), sample_rate=44100)
    assert abs(len(st44.audio) - len(speech)) <= 2
    i16 = media_from_arrays(waveform=st, sample_rate=SR)
    assert np.allclose(i16.audio, speech, atol=1e-3)
    few = media_from_arrays(face_frames[:3])
    assert few.frames_repeated == 5 and few.frame_times is None
    with pytest.raises(MediaError):
        media_from_arrays()
    with pytest.raises(MediaError, match="max_pixels"):
        media_from_arrays(np.zeros((2, 40, 40, 3), np.uint8), cfg=MediaConfig(max_pixels=1000))


def test_non_finite_audio_samples_become_silence_with_a_warning(speech):
    wav = speech[:SR].copy()
    wav[[10, 500, 900]] = [np.nan, np.inf, -np.inf]
    m = media_from_arrays(waveform=wav, sample_rate=SR)
    assert np.isfinite(m.audio).all() and (m.audio[[10, 500, 900]] == 0).all()
    assert np.array_equal(np.delete(m.audio, [10, 500, 900]), np.delete(wav, [10, 500, 900]))
    assert any("non-finite" in w for w in m.warnings)
    assert m.info["audio"]["peak"] == round(float(np.abs(np.delete(wav, [10, 500, 900])).max()), 6)
    clean = media_from_arrays(waveform=speech[:SR], sample_rate=SR)
    assert not any("non-finite" in w for w in clean.warnings)


def test_audio_clip_layout():
    L = 2 * SR
    short = np.ones(int(3 * SR), np.float32)
    clips, mask = audio_clips(short, 8, L)
    assert mask.tolist() == [True, True] + [False] * 6
    assert clips[0].min() == 1 and clips[1, : SR].min() == 1 and clips[1, SR:].max() == 0 and clips[2:].max() == 0
    long = np.arange(30 * SR, dtype=np.float32)
    clips, mask = audio_clips(long, 8, L)
    assert mask.all()
    assert clips[0, 0] == 0 and clips[-1, -1] == long[-1]  # first at the start, last ends at the end
    starts = clips[:, 0]
    assert np.allclose(np.diff(starts), np.diff(starts)[0], atol=1)  # evenly spread
    exact = np.ones(16 * SR, np.float32)
    clips, mask = audio_clips(exact, 8, L)
    assert mask.all() and clips.min() == 1
    clips, mask = audio_clips(np.zeros(0, np.float32), 8, L)
    assert not mask.any()


# --- limits ---------------------------------------------------------------------------------------
def test_max_seconds_caps_decoding(media_dir):
    cfg = MediaConfig(max_seconds=0.5)
    m = load_media(media_dir / "clip.mp4", cfg)
    assert len(m.audio) == SR // 2 and m.frame_times.max() < 0.5
    assert any("max_seconds" in w for w in m.warnings)
    a = load_media(media_dir / "speech.flac", cfg)
    assert len(a.audio) == SR // 2


@pytest.mark.parametrize("name", [n for n, (vc, *_) in VIDEOS.items()])
def test_sampled_frames_are_those_of_decoding_every_frame(media_dir, name):
    """Short clips (under 6 frames a sample) skip the non-reference frames no target needs: the
    result is bit-identical to decoding every frame (`skip_nonref=False`), and for codecs with
    B-frames fewer frames are decoded."""
    import av

    fast = load_media(media_dir / name)
    full = load_media(media_dir / name, MediaConfig(skip_nonref=False))
    for key in ("frames", "faces", "face_mask", "frame_times", "audio", "audio_clips"):
        assert np.array_equal(getattr(fast, key), getattr(full, key)), key
    with av.open(str(media_dir / name)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert full.info["video"]["frames_decoded"] == len(times)
    assert len(set(fast.frame_times.tolist())) == 8  # 30 frames: 8 different ones sampled
    assert all(np.isclose(times, t + times[0]).any() for t in fast.frame_times)
    if VIDEOS[name][0] in ("h264", "hevc"):  # B-frames nothing is predicted from
        assert fast.info["video"]["frames_decoded"] < len(times)


def test_frames_whose_times_differ_from_their_packets_are_decoded_again(monkeypatch, media_dir):
    """Should the decoded frames' times not be those the packets announced, the look-ahead is
    wrong about which frames to keep: the clip is decoded again, every frame (same result)."""
    from nanoemox.data.media import streams

    full = load_media(media_dir / "clip.mp4", MediaConfig(skip_nonref=False))
    real = streams._kept_frames
    calls = []

    def shifted(packets, vs, targets):
        calls.append(len(packets))
        pts, times = real(packets, vs, targets)
        return pts, [t + 0.001 for t in times]  # the times the decoder will not give

    monkeypatch.setattr(streams, "_kept_frames", shifted)
    redone = load_media(media_dir / "clip.mp4")
    assert len(calls) == 1  # one look-ahead, then the plain pass
    assert redone.info["video"]["frames_decoded"] == full.info["video"]["frames_decoded"]
    for key in ("frames", "faces", "frame_times", "audio", "audio_clips"):
        assert np.array_equal(getattr(redone, key), getattr(full, key)), key


def test_seek_sampling_matches_linear(media_dir):
    lin = load_media(media_dir / "clip.mp4")
    seek = load_media(media_dir / "clip.mp4", MediaConfig(seek_threshold_s=0.5))
    assert np.allclose(lin.frame_times, seek.frame_times, atol=0.045)
    assert np.array_equal(lin.audio, seek.audio)
    assert seek.face_mask.sum() >= 7


def test_short_clip_repeats_frames(tmp_path, face_frames):
    path = write_video(tmp_path / "three.mp4", face_frames[:3], FPS)
    m = load_media(path)
    assert m.frames.shape[0] == 8 and m.frames_repeated == 5
    assert len(np.unique(m.frame_times)) == 3


def test_custom_sizes(media_dir):
    cfg = MediaConfig(n_frames=4, frame_size=64, n_clips=3, clip_seconds=0.5, face_size=48)
    m = load_media(media_dir / "clip.webm", cfg)
    assert m.frames.shape == (4, 64, 64, 3) and m.faces.shape == (4, 48, 48, 3)
    assert m.audio_clips.shape == (3, 8000) and m.audio_clip_mask.all()
    no_faces = load_media(media_dir / "clip.webm", MediaConfig(detect_faces=False))
    assert no_faces.faces is None and no_faces.face_mask is None


def test_rotated_video_is_turned_upright(tmp_path):
    import av

    path = tmp_path / "rot.mp4"
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :8] = 255  # a white stripe on the left edge
    with av.open(str(path), "w") as out:
        vs = out.add_stream("h264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 32, "yuv420p"
        vs.set_display_rotation(90)
        for _ in range(10):
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    m = load_media(path, MediaConfig(frame_size=64, detect_faces=False))
    f = m.frames[0].astype(int)
    # turned 90 degrees counter-clockwise into a 32x64 portrait (letterboxed: bars left and right),
    # the left stripe ends up along the bottom
    assert f[:, :12].max() < 30 and f[:, -12:].max() < 30
    assert f[-6:, 20:44].mean() > 200 and f[:40, 20:44].mean() < 30


# --- warnings, not errors ---------------------------------------------------------------------------
def test_silence_and_no_face_are_warnings(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (20, 96, 128, 3), dtype=np.uint8)
    path = write_video(tmp_path / "noise.mp4", noise, 10, np.zeros(SR * 2, np.float32), SR)
    m = load_media(path)
    assert m.frames is not None and m.audio is not None
    assert not m.face_mask.any() and m.faces.max() == 0
    assert "no face detected in any sampled frame" in m.warnings and "audio is silent" in m.warnings
    silent = write_audio(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    assert load_media(silent).warnings == ["audio is silent"]


# --- bad input ------------------------------------------------------------------------------------
def _bad(kind: str, d: Path, media_dir: Path) -> tuple[Path, str, MediaConfig | None]:
    src = (media_dir / "clip.mp4").read_bytes()
    if kind == "missing":
        return d / "nope.mp4", "file not found", None
    if kind == "zero_byte":
        (d / "zero.mp4").write_bytes(b"")
        return d / "zero.mp4", "empty file", None
    if kind == "truncated_mp4":
        (d / "cut.mp4").write_bytes(src[: len(src) // 2])
        return d / "cut.mp4", "corrupt or truncated", None
    if kind == "truncated_webm":
        web = (media_dir / "clip.webm").read_bytes()
        (d / "cut.webm").write_bytes(web[: len(web) // 4])
        return d / "cut.webm", "truncated", None
    if kind == "truncated_wav":
        wav = (media_dir / "speech.wav").read_bytes()
        (d / "cut.wav").write_bytes(wav[:1000])
        return d / "cut.wav", "truncated", None
    if kind == "truncated_jpg":
        from PIL import Image

        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(d / "x.jpg")
        data = (d / "x.jpg").read_bytes()
        (d / "cut.jpg").write_bytes(data[: len(data) // 3])
        return d / "cut.jpg", "truncated", None
    if kind == "corrupt_mp4":
        data = bytearray(src)
        for k in range(2000, len(data) - 3000, 7):  # garble the media data, keep the headers
            data[k] = (data[k] * 31 + 7) % 256
        (d / "garbled.mp4").write_bytes(bytes(data))
        return d / "garbled.mp4", "corrupt", None
    if kind == "text_file":
        (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
        return d / "notes.mp4", "not a media file", None
    if kind == "random_bytes":
        (d / "blob.bin").write_bytes(np.random.default_rng(1).bytes(4096))
        return d / "blob.bin", "not a media file", None
    if kind == "no_usable_stream":
        data = (media_dir / "clip_mjpeg.avi").read_bytes().replace(b"vids", b"txts")  # the only stream becomes text
        (d / "text_only.avi").write_bytes(data)
        return d / "text_only.avi", "no usable stream", None
    if kind == "unsupported_codec":
        data = (media_dir / "clip_mjpeg.avi").read_bytes().replace(b"MJPG", b"ZZZZ")  # an unknown FourCC
        (d / "zzzz.avi").write_bytes(data)
        return d / "zzzz.avi", "unsupported codec", None
    if kind == "too_many_pixels":
        return media_dir / "clip.mp4", "above max_pixels", MediaConfig(max_pixels=100 * 100)
    if kind == "too_many_pixels_image":
        from PIL import Image

        Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(d / "big.png")
        return d / "big.png", "above max_pixels", MediaConfig(max_pixels=300 * 399)
    if kind == "directory_without_frames":
        (d / "somedir").mkdir(exist_ok=True)
        return d / "somedir", "no frame images", None
    raise AssertionError(kind)


BAD_KINDS = ["missing", "zero_byte", "truncated_mp4", "truncated_webm", "truncated_wav", "truncated_jpg", "corrupt_mp4",
             "text_file", "random_bytes", "no_usable_stream", "unsupported_codec", "too_many_pixels", "too_many_pixels_image",
             "directory_without_frames"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_media_error(tmp_path, media_dir, kind):
    path, reason, cfg = _bad(kind, tmp_path, media_dir)
    with pytest.raises(MediaError) as ei:
        load_media(path, cfg)
    assert ei.value.path == str(path)
    assert reason in ei.value.reason, ei.value.reason
    assert str(path) in str(ei.value)


def test_config_is_validated():
    with pytest.raises(ValueError):
        MediaConfig(n_frames=0)
    with pytest.raises(ValueError):
        MediaConfig(frame_fit="stretch")


# --- nanoemox inspect -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inspect_dir(tmp_path_factory, media_dir, astronaut) -> Path:
    """~20 mixed files: the videos and sound files above, pictures, two bad files, a non-media file."""
    from PIL import Image

    d = tmp_path_factory.mktemp("inspect")
    for f in media_dir.iterdir():
        shutil.copy(f, d / f.name)
    (d / "sub").mkdir()
    Image.fromarray(astronaut).save(d / "sub" / "astronaut.jpg")
    Image.fromarray(astronaut[::2, ::2]).save(d / "sub" / "small.png")
    shutil.copy(media_dir / "clip.mp4", d / "sub" / "copy.mp4")
    write_audio(d / "sub" / "tone.wav", 0.2 * np.sin(np.arange(SR) / 5).astype(np.float32))
    write_audio(d / "sub" / "tone44.flac", 0.2 * np.sin(np.arange(44100) / 5).astype(np.float32), 44100)
    (d / "zz_broken.mp4").write_bytes(b"")
    (d / "zz_fake.wav").write_text("not audio at all")
    (d / "README.txt").write_text("not media: ignored when expanding the folder")
    return d


def test_inspect_folder_json(inspect_dir, capsys):
    from nanoemox.cli import main

    rc = main(["inspect", str(inspect_dir), "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 2
    assert len(lines) == len(VIDEOS) + len(AUDIOS) + 5 + 2 == 18
    by = {Path(r["path"]).name: r for r in lines}
    assert "README.txt" not in by
    assert not by["zz_broken.mp4"]["ok"] and "empty" in by["zz_broken.mp4"]["error"]
    assert not by["zz_fake.wav"]["ok"] and by["zz_fake.wav"]["error"]
    good = [r for r in lines if r["ok"]]
    assert len(good) == 16 and all(r["error"] is None for r in good)
    mp4 = by["clip.mp4"]
    assert set(mp4) >= {"path", "ok", "error", "duration_s", "video", "audio", "faces", "warnings"}
    assert mp4["video"]["width"] == 160 and mp4["video"]["height"] == 160 and mp4["video"]["fps"] == 25.0
    assert mp4["video"]["frames_sampled"] == 8 and mp4["audio"]["sample_rate"] == 16000
    assert mp4["audio"]["seconds"] == pytest.approx(SECONDS, abs=0.15) and mp4["faces"]["frames_with_face"] >= 7
    assert by["speech.flac"]["video"] is None and by["speech.flac"]["faces"] is None
    assert by["astronaut.jpg"]["audio"] is None and by["astronaut.jpg"]["faces"]["frames_with_face"] == 8


def test_inspect_exit_codes_and_table(inspect_dir, media_dir, tmp_path, capsys):
    from nanoemox.cli import main

    assert main(["inspect", str(media_dir / "clip.mp4"), str(media_dir / "speech.ogg")]) == 0
    out = capsys.readouterr().out
    assert "clip.mp4" in out and "speech.ogg" in out and "2 of 2 files decoded" in out
    assert main(["inspect", str(media_dir / "clip.mp4"), str(tmp_path / "missing.mp4"), "--json"]) == 2
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["ok"] for r in rows] == [True, False] and rows[1]["error"] == "file not found"
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["inspect", str(empty), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "folder holds no media files"


def test_inspect_console_script(inspect_dir, media_dir):
    """The installed `nanoemox` entry point, as a user runs it."""
    exe = Path(sys.executable).parent / "nanoemox"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nanoemox.cli"]
    ok = subprocess.run(cmd + ["inspect", "--json", "--no-faces", str(media_dir / "speech.wav")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["audio"]["sample_rate"] == 16000
    bad = subprocess.run(cmd + ["inspect", "--json", "--no-faces", str(inspect_dir)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stdout.splitlines()) == 18
