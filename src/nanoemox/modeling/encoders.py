"""Modality encoders: wrappers that turn any transformers vision tower / speech encoder / face
backbone into the per-frame and per-clip vectors the adapters and the fusion encoder consume."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import ConfigError
from .configuration import AudioConfig, FaceConfig, VisionConfig


def _maybe_no_grad(module: nn.Module):
    """Frozen encoders run without building a graph (saves memory and time)."""
    trainable = any(p.requires_grad for p in module.parameters())
    return contextlib.nullcontext() if trainable else torch.no_grad()


_META_KEYS = {"transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype", "id2label", "label2id", "output_hidden_states", "return_dict", "use_cache"}


def record_loaded_config(cfg, attr: str, loaded) -> None:
    """Write a loaded checkpoint's own architecture into the part's config (its `encoder_config` /
    `backbone_config`), so the saved config.json records the widths and depths actually loaded
    rather than the preset's nominal ones (as LLaVA keeps the vision config it read)."""
    d = loaded if isinstance(loaded, dict) else loaded.to_dict()
    d = {k: v for k, v in d.items() if k not in _META_KEYS and not k.startswith("_")}
    if isinstance(cfg, dict):
        cfg[attr] = d
    else:
        setattr(cfg, attr, d)


def _select(hidden_states: tuple[torch.Tensor, ...], layer: int, what: str) -> torch.Tensor:
    n = len(hidden_states)
    if not -n <= layer < n:
        raise ConfigError(f"{what} layer {layer} does not exist (the encoder has {n - 1} layers + embeddings)")
    return hidden_states[layer]


class VisionEncoder(nn.Module):
    """CLIP-vision-like tower -> CLS vector per frame, for the Q-Former and for each fusion layer."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.tower = _build_vision_tower(cfg)
        self.hidden_size = self.tower.config.hidden_size
        if cfg.source == "path":
            record_loaded_config(cfg, "encoder_config", self.tower.config)
            cfg.image_size = int(self.tower.config.image_size)  # frames are resized to what the tower was trained on

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # pixel_values: (B, T, 3, H, W)
        B, T = pixel_values.shape[:2]
        with _maybe_no_grad(self.tower):
            out = self.tower(pixel_values=pixel_values.flatten(0, 1), output_hidden_states=True)
        hs = out.hidden_states
        cls = _select(hs, self.cfg.feature_layer, "vision")[:, 0]  # (B*T, D)
        ms = torch.stack([_select(hs, i, "vision fusion")[:, 0] for i in self.cfg.fusion_layers], 1)  # (B*T, E, D)
        return cls.view(B, T, -1), ms.view(B, T, len(self.cfg.fusion_layers), -1)


def _build_vision_tower(cfg: VisionConfig) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if cfg.encoder_type != "clip":
        raise ConfigError(f"vision encoder_type {cfg.encoder_type!r} is not supported (use 'clip': any CLIP-vision-like tower)")
    if cfg.source == "random":
        return CLIPVisionModel(CLIPVisionConfig(**cfg.encoder_config))
    if cfg.source == "path":
        # Works on a full CLIP checkpoint too (keeps the vision half), as LLaVA does.
        return CLIPVisionModel.from_pretrained(_local(cfg.path, "vision"), dtype=torch.float32)
    raise ConfigError(f"vision source {cfg.source!r} is not supported (random | path)")


def _local(path: str | None, what: str) -> str:
    from pathlib import Path

    if not path or not Path(path).is_dir():
        raise ConfigError(f"{what} weights: local folder {path!r} not found (nanoemox never downloads; pass a local Hugging Face folder)")
    return path


class AudioEncoder(nn.Module):
    """Speech encoder -> one vector per clip (time-mean), for the Q-Former and each fusion layer.

    HuBERT / wav2vec2 take `audio_values` (B, K, N) raw 16 kHz clips; Whisper takes (B, 80, F), the
    log-mel of the K clips laid end to end at the start of its 30 s window (one pass instead of K;
    F >= K*S*100 frames, up to the full 3000). Only the
    positions covering the clips are encoded (K*S*50 of 1500: the rest is padding, and skipping it
    makes 8 one-second clips ~4x cheaper); they are split back into the K clips before pooling.
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = _build_audio_encoder(cfg)
        self.hidden_size = self.encoder.config.hidden_size if hasattr(self.encoder.config, "hidden_size") else self.encoder.config.d_model
        if cfg.source == "path":
            record_loaded_config(cfg, "encoder_config", self.encoder.config)
        # feature_layer may list several layers: their per-clip features are averaged (the paper's
        # HuBERT feature is the mean of its last four layers).
        fl = cfg.feature_layer
        self.feature_layers = [int(i) for i in fl] if isinstance(fl, (list, tuple)) else [int(fl)]

    def forward(self, audio_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        K = self.cfg.num_clips
        nf = len(self.feature_layers)
        layers = [*self.feature_layers, *self.cfg.fusion_layers]
        with _maybe_no_grad(self.encoder):
            if self.cfg.encoder_type == "whisper":
                per_clip = int(round(self.cfg.clip_seconds * 50))  # Whisper: 50 positions per second
                hs = _whisper_hidden_states(self.encoder, audio_values, per_clip * K)  # each (B, K*per_clip, D)
                pooled = [_select(hs, i, "audio").unflatten(1, (K, per_clip)).mean(2) for i in layers]  # (B, K, D)
            else:
                B = audio_values.shape[0]
                hs = self.encoder(audio_values.flatten(0, 1), output_hidden_states=True).hidden_states
                pooled = [_select(hs, i, "audio").mean(1).view(B, K, -1) for i in layers]  # (B, K, D)
        feature = pooled[0] if nf == 1 else torch.stack(pooled[:nf]).mean(0)
        return feature, torch.stack(pooled[nf:], 2)  # (B, K, D), (B, K, E, D)


def _whisper_hidden_states(encoder: nn.Module, mel: torch.Tensor, positions: int) -> list[torch.Tensor]:
    """WhisperEncoder's forward on the first `positions` output positions only.

    Returns [embeddings, layer 1, ..., layer N] with the final layer norm applied to the last entry
    (so index -1 is the encoder output). transformers' forward insists on the full 30 s window."""
    max_pos = encoder.embed_positions.num_embeddings
    if positions > max_pos:
        raise ConfigError(f"audio clips need {positions} Whisper positions; the window has {max_pos} (30 s)")
    frames = positions * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    x = nn.functional.gelu(encoder.conv1(mel[..., :frames]))
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)  # (B, positions, D)
    h = x + encoder.embed_positions.weight[:positions]
    out = [h]
    for layer in encoder.layers:
        h = layer(h, None)
        h = h[0] if isinstance(h, tuple) else h
        out.append(h)
    out[-1] = encoder.layer_norm(out[-1])
    return out


def _build_audio_encoder(cfg: AudioConfig) -> nn.Module:
    from transformers import AutoModel, HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    kind = cfg.encoder_type
    if kind not in ("hubert", "wav2vec2", "whisper"):
        raise ConfigError(f"audio encoder_type {kind!r} is not supported (hubert | wav2vec2 | whisper)")
    if cfg.source == "random":
        if kind == "whisper":
            return WhisperEncoder(WhisperConfig(**cfg.encoder_config))
        return (HubertModel if kind == "hubert" else Wav2Vec2Model)((HubertConfig if kind == "hubert" else Wav2Vec2Config)(**cfg.encoder_config))
    if cfg.source == "builtin":
        if kind != "whisper":
            raise ConfigError("the builtin audio encoder is Whisper tiny.en (encoder_type: whisper)")
        from .pretrained.whisper import load_whisper_encoder

        return load_whisper_encoder()
    if cfg.source == "path":
        model = AutoModel.from_pretrained(_local(cfg.path, "audio"), dtype=torch.float32)
        return model.get_encoder() if kind == "whisper" and hasattr(model, "get_encoder") else model
    raise ConfigError(f"audio source {cfg.source!r} is not supported (random | builtin | path)")


class FaceBackbone(nn.Module):
    """Frozen per-frame face backbone: face crops (B, T, C, S, S) -> (B, T, D)."""

    def __init__(self, cfg: FaceConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.backbone_type == "fer":
            from .pretrained.fer import MiniXception, load_fer

            self.net = load_fer() if cfg.source == "builtin" else MiniXception(**cfg.backbone_config)
            self.feature_dim = self.net.feature_dim
        elif cfg.backbone_type == "facexformer":
            from .pretrained.facexformer import FaceXFormerEncoder, load_facexformer

            if cfg.source == "path":
                self.net = load_facexformer(cfg.path or "")
                record_loaded_config(cfg, "backbone_config", self.net.arch)
            elif cfg.source == "random":
                self.net = FaceXFormerEncoder(**cfg.backbone_config)
            else:
                raise ConfigError(f"face source {cfg.source!r} is not supported for facexformer (random | path)")
            self.feature_dim = self.net.feature_dim
        elif cfg.backbone_type == "swin":
            from transformers import AutoModel, SwinConfig, SwinModel

            if cfg.source == "path":
                self.net = AutoModel.from_pretrained(_local(cfg.path, "face"), dtype=torch.float32)
                record_loaded_config(cfg, "backbone_config", self.net.config)
            elif cfg.source == "random":
                self.net = SwinModel(SwinConfig(**cfg.backbone_config))
            else:
                raise ConfigError(f"face source {cfg.source!r} is not supported for swin (random | path)")
            self.feature_dim = self.net.config.hidden_size
        else:
            raise ConfigError(f"face backbone_type {cfg.backbone_type!r} is not supported (fer | facexformer | swin)")

    @property
    def in_channels(self) -> int:
        return 1 if self.cfg.backbone_type == "fer" else 3

    def forward(self, face_values: torch.Tensor) -> torch.Tensor:
        B, T = face_values.shape[:2]
        x = face_values.flatten(0, 1)  # (B*T, C, S, S)
        with _maybe_no_grad(self.net):
            if self.cfg.backbone_type == "fer":
                feats = self.net(x).features
            elif self.cfg.backbone_type == "facexformer":
                feats = self.net(x)
            else:
                feats = self.net(pixel_values=x).pooler_output
        return feats.view(B, T, -1)
