"""Shared test fixtures. Tests run offline (the Makefile sets HF_HUB_OFFLINE=1)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def refdata() -> Path:
    """../shared/refdata through NANOEMOX_REFDATA. Missing data is a failure, never a skip."""
    root = Path(os.environ.get("NANOEMOX_REFDATA") or REPO.parent / "shared" / "refdata")
    if not (root / "data").is_dir():
        pytest.fail(f"NANOEMOX_REFDATA={root} is missing: tests need ../shared/refdata")
    return root


@pytest.fixture(scope="session")
def astronaut():
    """skimage's astronaut photo (a smiling face), RGB uint8."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper():
    """matplotlib's Grace Hopper photo (a neutral face), RGB uint8."""
    import matplotlib
    import numpy as np
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """A real speech clip spoken by espeak-ng (22.05 kHz mono WAV, its native rate)."""
    import subprocess

    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(out), "-s", "150", "I can't believe you forgot my birthday again, after everything."],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def talking_clip(tmp_path_factory, astronaut, speech_wav) -> Path:
    """A real mp4 (h264 + aac, 3 s): the astronaut photo panning, espeak-ng speech."""
    import numpy as np
    import soundfile as sf

    from mediakit import write_video

    wav, sr = sf.read(str(speech_wav), dtype="float32")
    img = np.ascontiguousarray(astronaut[::2, ::2])
    frames = np.stack([np.roll(img, 2 * i, axis=1) for i in range(30)])
    return write_video(tmp_path_factory.mktemp("clip") / "astronaut.mp4", frames, fps=10, waveform=wav[: 3 * sr], sample_rate=sr)
