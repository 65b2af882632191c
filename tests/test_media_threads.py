"""Cheap paths in media preprocessing give the values of the general paths: the processor's tensors
on one thread vs torch's thread team, mono float audio frames read as buffer views vs PyAV's
to_ndarray."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from nanoemox.data.media import media_from_arrays
from nanoemox.data.media.streams import _mono_float
from nanoemox.modeling.presets import get_preset
from nanoemox.modeling.processing import NanoEmoXProcessor, one_thread


def test_media_tensors_on_one_thread_equal_the_thread_team(astronaut):
    import cv2

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a team to compare with, even where the runner limits threads
    try:
        proc = NanoEmoXProcessor(get_preset("small"), None)
        rng = np.random.default_rng(0)
        frames = np.stack([cv2.resize(np.roll(astronaut, 8 * k, axis=1), (160, 160), interpolation=cv2.INTER_AREA) for k in range(8)])
        wav = (0.1 * np.sin(np.arange(4 * 16000) / 7.0) + 0.01 * rng.standard_normal(4 * 16000)).astype(np.float32)
        media = media_from_arrays(frames, wav, 16000, proc.media_config(), fps=2.0)
        mods = proc.present_modalities(media)
        assert mods >= {"frame", "audio", "face"}
        team = proc._media_tensors(media, mods)  # torch's team of 2
        single = proc.media_tensors(media, mods)
        assert set(single) == set(team) and set(team) >= {"pixel_values", "audio_values", "face_values"}
        for k in team:
            assert torch.equal(single[k], team[k]), k

        seen = {}
        with one_thread():
            seen["inside"] = torch.get_num_threads()
            other = threading.Thread(target=lambda: seen.update(other=torch.get_num_threads()))
            other.start()
            other.join()
        assert seen == {"inside": 1, "other": 2}  # the limit is this thread's only
        assert torch.get_num_threads() == 2  # and lifted afterwards
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("fmt", ["flt", "fltp"])
def test_mono_float_frames_read_as_views(fmt):
    import av

    x = np.random.default_rng(1).standard_normal((1, 1000)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(x, format=fmt, layout="mono")
    view = _mono_float(frame)
    assert view is not None and view.dtype == np.float32
    assert np.array_equal(view, frame.to_ndarray().reshape(-1)) and np.array_equal(view, x[0])
    stereo = av.AudioFrame.from_ndarray(np.zeros((2, 10) if fmt == "fltp" else (1, 20), np.float32), format=fmt, layout="stereo")
    assert _mono_float(stereo) is None
    s16 = av.AudioFrame.from_ndarray(np.zeros((1, 10), np.int16), format="s16", layout="mono")
    assert _mono_float(s16) is None
