"""The small preset wired from real offline parts: it builds, routes every modality, and its
language model still speaks English through the full NanoEmoX model (text-only prompt)."""
from __future__ import annotations

import pytest
import torch

from nanoemox.modeling import NanoEmoXForConditionalGeneration
from nanoemox.modeling.processing import NanoEmoXProcessor
from nanoemox.prompts import chat_messages
from test_pretrained import dictionary_fraction, english_words


@pytest.fixture(scope="module")
def small():
    return NanoEmoXForConditionalGeneration.from_preset("small")


def test_small_preset_parts(small):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from nanoemox.modeling.pretrained.fer import MiniXception

    assert isinstance(small.audio_encoder.encoder, WhisperEncoder)
    assert isinstance(small.face_backbone.net, MiniXception)
    assert small.language_model.config.hidden_size == 576 and small.language_model.config.num_hidden_layers == 30
    # the random vision tower trains in phase 1b only; the pretrained encoders never train
    try:  # the model is shared with the next test: always hand it back frozen
        small.set_phase("1b")
        assert any(p.requires_grad for p in small.vision_encoder.parameters())
        for phase in ("1a", "1b", "2", "3"):
            small.set_phase(phase)
            assert not any(p.requires_grad for p in small.audio_encoder.parameters())
            assert not any(p.requires_grad for p in small.face_backbone.parameters())
            assert not any(p.requires_grad for n, p in small.language_model.named_parameters() if "lora_" not in n)
    finally:
        small.set_phase(None)


def test_small_model_speaks_english_text_only(small):
    tok = small.tokenizer
    prompt = tok.apply_chat_template(chat_messages("In two sentences, why do friends matter?"), tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    out = small.generate(ids, torch.ones_like(ids), max_new_tokens=32)
    text = tok.decode(out[0], skip_special_tokens=True).strip()
    assert text, "empty generation"
    assert dictionary_fraction(text, english_words()) >= 0.7, text


def test_small_encoders_on_a_real_clip(small, tmp_path, astronaut, speech_wav):
    """A real mp4 (photo + espeak speech) through the small preset's own preprocessing."""
    import av
    import numpy as np
    import soundfile as sf

    from nanoemox.data.media import load_media

    wav, sr = sf.read(speech_wav, dtype="float32")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as c:
        v = c.add_stream("h264", rate=10)
        v.width, v.height, v.pix_fmt = 256, 256, "yuv420p"
        a = c.add_stream("aac", rate=sr)
        img = np.ascontiguousarray(astronaut[:256, 128:384])
        for _ in range(20):
            for pkt in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in v.encode():
            c.mux(pkt)
        frame = av.AudioFrame.from_ndarray(wav[None, : sr * 2], format="flt", layout="mono")
        frame.sample_rate = sr
        for pkt in a.encode(frame):
            c.mux(pkt)
        for pkt in a.encode():
            c.mux(pkt)
    proc = NanoEmoXProcessor(small.config, small.tokenizer)
    media = load_media(path, proc.media_config())
    mods = proc.present_modalities(media)
    assert mods == {"frame", "audio", "face", "multi"}
    t = {k: v.unsqueeze(0) for k, v in proc.media_tensors(media, mods).items()}
    enc = small.encode(**t)
    assert enc.audio_clip.shape == (1, small.config.audio.num_clips, 384)
    assert enc.face.shape == (1, small.config.vision.num_frames, 128)
    assert torch.isfinite(enc.frame_cls).all()


def test_trimmed_log_mel_equals_the_full_window(speech_wav):
    """The processor computes Whisper's log-mel only over the clips; those frames must equal the
    full 30 s window's (which the CTranslate2 match is verified on)."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    from nanoemox.modeling.pretrained.whisper import log_mel

    wav, sr = sf.read(speech_wav, dtype="float32")
    wav = resample_poly(wav, 16000, sr).astype(np.float32)[: 4 * 16000]
    full, trimmed = log_mel(wav), log_mel(wav, seconds=4.0)
    assert full.shape == (80, 3000) and trimmed.shape[1] >= 400
    assert np.array_equal(full[:, :400], trimmed[:, :400])
