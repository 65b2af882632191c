"""What the model's stages hand each other: encoder outputs (cacheable) and the model output."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

IGNORE_INDEX = -100  # label of positions that are not scored (the prompt, padding)


@dataclass
class EncoderOutputs:
    """Outputs of the (usually frozen) encoders; None where a modality is absent from the batch.
    Masks are (B, T) / (B, K) bool: True where a frame / clip / face is real."""

    frame_cls: torch.Tensor | None = None  # (B, T, Dv)
    frame_ms: torch.Tensor | None = None  # (B, T, E, Dv)
    frame_mask: torch.Tensor | None = None  # (B, T)
    audio_clip: torch.Tensor | None = None  # (B, K, Da)
    audio_ms: torch.Tensor | None = None  # (B, K, E, Da)
    audio_mask: torch.Tensor | None = None  # (B, K)
    face: torch.Tensor | None = None  # (B, T, Df)
    face_mask: torch.Tensor | None = None  # (B, T)

    def to_dict(self) -> dict[str, torch.Tensor]:
        # not dataclasses.asdict: it deep-copies, which breaks tensors that carry autograd history
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def to(self, device) -> "EncoderOutputs":
        return EncoderOutputs(**{k: v.to(device) for k, v in self.to_dict().items()})


@dataclass
class NanoEmoXOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, L, V); with labels, only the scored answer positions: (N_answer, V)
    gate_weights: torch.Tensor | None = None  # (B, E): fusion gate per sample (rows of absent fusion are NaN)
