"""From samples and decoded media to model tensors: prompts, labels, pixel / audio / face values.

The processor is the only place that knows how each encoder wants its input (CLIP normalisation,
Whisper log-mel vs raw clips, grey 64x64 faces for the FER net), so training, inference and the
server all prepare inputs the same way.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..errors import DataError
from ..prompts import MODALITY_ORDER, PromptSpec, chat_messages, target_text, user_turn
from .configuration import NanoEmoXConfig
from .outputs import IGNORE_INDEX, EncoderOutputs

ALL_MODALITIES = frozenset(MODALITY_ORDER)


@dataclass(frozen=True)
class EncoderKeys:
    """The tensors around one encoder. Masks are (T,) / (K,) bool, True where real."""

    input: str  # what the processor feeds it (per sample, no batch dim)
    mask: str
    outputs: tuple[str, ...]  # the EncoderOutputs fields it produces (cacheable)


# The one modality -> tensor-key table. Each modality's placeholder block is computed from these
# encoder outputs; the fused block needs both the frame and the audio pathway (multi-scale).
ENCODER_KEYS = {
    "vision_encoder": EncoderKeys("pixel_values", "frame_mask", ("frame_cls", "frame_ms")),
    "audio_encoder": EncoderKeys("audio_values", "audio_mask", ("audio_clip", "audio_ms")),
    "face_backbone": EncoderKeys("face_values", "face_mask", ("face",)),
}
MODALITY_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {  # modality -> ((encoder, output field), ...)
    "multi": (("vision_encoder", "frame_ms"), ("audio_encoder", "audio_ms")),
    "audio": (("audio_encoder", "audio_clip"),),
    "face": (("face_backbone", "face"),),
    "frame": (("vision_encoder", "frame_cls"),),
}
MEDIA_KEYS = tuple(k for e in ENCODER_KEYS.values() for k in (e.input, e.mask))


@functools.lru_cache(maxsize=1)
def _openmp_pools():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="openmp")  # torch's libgomp (found once: ~5 ms)


@contextlib.contextmanager
def one_thread():
    """Run torch ops on the calling thread only. One sample's tensors are tiny (a few seconds of
    log-mel, a few 64-224 px frames): torch's OpenMP team costs far more than it saves there, as
    its idle threads spin after every op (on a loaded 2-core machine, log-mel of 4 s took ~25x
    the CPU time of the one-thread run). The OpenMP thread count is per thread, so model forward
    passes on other threads keep their team; elementwise ops, STFT and the mel projection give
    the same values."""
    with _openmp_pools().limit(limits=1):
        yield


def encoders_for(modalities: Iterable[str]) -> set[str]:
    """The encoders whose outputs the given placeholder blocks need."""
    return {enc for m in modalities for enc, _ in MODALITY_SOURCES[m]}


def media_keys(modalities: Iterable[str]) -> set[str]:
    """Processor tensors (encoder inputs + masks) the given modalities need."""
    return {k for enc in encoders_for(modalities) for k in (ENCODER_KEYS[enc].input, ENCODER_KEYS[enc].mask)}


def encoded_keys(modalities: Iterable[str]) -> set[str]:
    """EncoderOutputs fields (+ masks) the given modalities need."""
    return {k for m in modalities for enc, f in MODALITY_SOURCES[m] for k in (f, ENCODER_KEYS[enc].mask)}


@dataclass
class Example:
    """One (sample, task) pair, ready to collate. `media` holds per-sample tensors (no batch dim);
    `encoder_outputs` may hold cached per-sample encoder outputs instead."""

    input_ids: list[int]
    labels: list[int] | None = None
    media: dict[str, torch.Tensor] = field(default_factory=dict)
    encoder_outputs: dict[str, torch.Tensor] | None = None
    id: str = ""
    task: str = ""
    modalities: frozenset[str] = frozenset()


class NanoEmoXProcessor:
    def __init__(self, config: NanoEmoXConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer
        self._mel = None

    # ---------------------------------------------------------------- media
    def media_config(self, **overrides: Any):
        """The MediaConfig that decodes clips the way this model wants them."""
        from ..data.media import MediaConfig

        c = self.config
        kw = dict(
            n_frames=c.vision.num_frames,
            frame_size=c.vision.image_size,
            n_clips=c.audio.num_clips,
            clip_seconds=c.audio.clip_seconds,
            sample_rate=c.audio.sample_rate,
            face_size=c.face.input_size,
        )
        kw.update(overrides)
        return MediaConfig(**kw)

    def present_modalities(self, media, allowed: Iterable[str] = ALL_MODALITIES) -> frozenset[str]:
        """Which placeholder blocks a sample gets: a modality must exist in the media and be allowed."""
        allowed = set(allowed)
        have = set()
        if media is not None:
            if media.frames is not None:
                have.add("frame")
            if media.audio_clips is not None and media.audio_clip_mask is not None and bool(np.any(media.audio_clip_mask)):
                have.add("audio")
            if media.faces is not None and media.face_mask is not None and bool(np.any(media.face_mask)):
                have.add("face")
            if {"frame", "audio"} <= have:
                have.add("multi")
        return frozenset(have & allowed)

    def media_tensors(self, media, modalities: Iterable[str]) -> dict[str, torch.Tensor]:
        """Per-sample encoder inputs for the given modalities (no batch dimension), computed on
        this thread alone (`one_thread`): the same values as with torch's thread team."""
        with one_thread():
            return self._media_tensors(media, modalities)

    def _media_tensors(self, media, modalities: Iterable[str]) -> dict[str, torch.Tensor]:
        need = encoders_for(modalities)
        out: dict[str, torch.Tensor] = {}
        if "vision_encoder" in need:
            out["pixel_values"] = self._pixels(media.frames)  # (T, 3, S, S)
            out["frame_mask"] = torch.ones(out["pixel_values"].shape[0], dtype=torch.bool)
        if "audio_encoder" in need:
            out["audio_values"] = self._audio(media.audio_clips)  # (K, N) or log-mel (80, F)
            out["audio_mask"] = torch.as_tensor(np.asarray(media.audio_clip_mask, dtype=bool))
        if "face_backbone" in need:
            out["face_values"] = self._faces(media.faces)  # (T, C, S, S)
            out["face_mask"] = torch.as_tensor(np.asarray(media.face_mask, dtype=bool))
        return out

    def _pixels(self, frames: np.ndarray) -> torch.Tensor:
        import cv2

        vc = self.config.vision
        S = vc.image_size
        frames = np.asarray(frames)
        if frames.shape[1:3] != (S, S):
            frames = np.stack([cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA) for f in frames])
        x = torch.from_numpy(frames).float().div_(255.0).permute(0, 3, 1, 2)  # (T, 3, S, S)
        mean = torch.tensor(vc.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(vc.image_std).view(1, 3, 1, 1)
        return (x - mean) / std

    def _faces(self, faces: np.ndarray) -> torch.Tensor:
        import cv2

        fc = self.config.face
        faces = np.asarray(faces)
        if fc.backbone_type == "fer":
            from .pretrained.fer import preprocess_faces

            return preprocess_faces(faces)  # (T, 1, 64, 64)
        S = fc.input_size
        if faces.shape[1:3] != (S, S):
            faces = np.stack([cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA) for f in faces])
        x = torch.from_numpy(faces).float().div_(255.0).permute(0, 3, 1, 2)
        return (x - torch.tensor(fc.image_mean).view(1, 3, 1, 1)) / torch.tensor(fc.image_std).view(1, 3, 1, 1)

    def _audio(self, clips: np.ndarray) -> torch.Tensor:
        ac = self.config.audio
        clips = np.asarray(clips, dtype=np.float32)  # (K, N)
        if ac.encoder_type == "whisper":
            from .pretrained.whisper import log_mel

            # Only the span the encoder reads (the K clips) is computed: same values as the full window.
            return torch.from_numpy(log_mel(clips.reshape(-1), seconds=ac.num_clips * ac.clip_seconds))  # (80, >= 100*K*S)
        # HuBERT / wav2vec2 feature extractors normalise each clip to zero mean, unit variance.
        mean = clips.mean(-1, keepdims=True)
        std = clips.std(-1, keepdims=True)
        return torch.from_numpy((clips - mean) / np.sqrt(std**2 + 1e-7))  # (K, N)

    # ---------------------------------------------------------------- text
    def prompt_spec(self, modalities: Iterable[str]) -> PromptSpec:
        t = self.config.tokens
        m = set(modalities)
        return PromptSpec(
            multi=t.multi if "multi" in m else 0,
            audio=t.audio if "audio" in m else 0,
            face=t.face if "face" in m else 0,
            frame=t.frame if "frame" in m else 0,
        )

    def tokenize(
        self,
        task: str,
        modalities: Iterable[str],
        transcript: str = "",
        history: Sequence[dict] = (),
        candidates: Sequence[str] | None = None,
        answer: str | None = None,
    ) -> tuple[list[int], list[int] | None]:
        """Prompt ids (+ answer ids and labels masked to the answer when `answer` is given)."""
        content = user_turn(task, self.prompt_spec(modalities), transcript, history, candidates, style=self.config.text.prompt_style)
        prompt = self.tokenizer.apply_chat_template(chat_messages(content), tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit = self.config.text.max_length
        if len(ids) > limit:
            raise DataError(f"prompt of {len(ids)} tokens exceeds max_length {limit} (shorten the transcript / history)")
        if answer is None:
            return ids, None
        ans = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        ans = ans[: max(limit - len(ids), 1)]
        return ids + ans, [IGNORE_INDEX] * len(ids) + ans

    def example(self, sample, task: str, media=None, allowed: Iterable[str] = ALL_MODALITIES, with_answer: bool = True, encoder_outputs=None) -> Example:
        """Build one Example from an AffectSample (media decoded already, or cached encoder outputs)."""
        if encoder_outputs is not None:
            modalities = frozenset(modalities_from_encoded(encoder_outputs)) & frozenset(allowed)
        else:
            modalities = self.present_modalities(media, allowed)
        cands = (sample.candidates or {}).get(task)
        answer = target_text(task, sample) if with_answer else None
        ids, labels = self.tokenize(task, modalities, sample.transcript, sample.history, cands, answer)
        ex = Example(input_ids=ids, labels=labels, id=sample.id, task=task, modalities=modalities)
        if encoder_outputs is not None:
            ex.encoder_outputs = keep_encoded(encoder_outputs, modalities)
        elif media is not None:
            ex.media = self.media_tensors(media, modalities)
        return ex

    # ---------------------------------------------------------------- batching
    def collate(self, examples: Sequence[Example]) -> dict[str, Any]:
        """Left-pad token ids (generation-friendly) and stack media; a modality absent from some
        samples is zero-filled with an all-False mask (their prompts hold no placeholder for it)."""
        pad = self.tokenizer.pad_token_id
        L = max(len(e.input_ids) for e in examples)
        B = len(examples)
        input_ids = torch.full((B, L), pad, dtype=torch.long)
        attention_mask = torch.zeros((B, L), dtype=torch.long)
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long) if examples[0].labels is not None else None
        for i, e in enumerate(examples):
            n = len(e.input_ids)
            input_ids[i, L - n :] = torch.tensor(e.input_ids)
            attention_mask[i, L - n :] = 1
            if labels is not None:
                labels[i, L - n :] = torch.tensor(e.labels)
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if labels is not None:
            batch["labels"] = labels
        if any(e.encoder_outputs is not None for e in examples):
            batch["encoder_outputs"] = EncoderOutputs(**stack_tensors([e.encoder_outputs or {} for e in examples]))
        else:
            batch.update(stack_tensors([e.media for e in examples]))
        return batch


def modalities_from_encoded(enc: dict[str, torch.Tensor]) -> set[str]:
    """Modalities a sample has, read from its (cached) encoder-output masks: a block is present
    when every encoder it draws on has at least one real frame / clip / face."""
    def real(encoder: str) -> bool:
        mask = enc.get(ENCODER_KEYS[encoder].mask)
        return mask is not None and bool(mask.any())

    return {m for m in MODALITY_ORDER if all(real(e) for e in encoders_for([m]))}


def keep_encoded(enc: dict[str, torch.Tensor], modalities: Iterable[str]) -> dict[str, torch.Tensor]:
    keys = encoded_keys(modalities)
    return {k: v for k, v in enc.items() if k in keys}


def stack_tensors(dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = sorted({k for d in dicts for k in d})
    out = {}
    for k in keys:
        ref = next(d[k] for d in dicts if k in d)
        out[k] = torch.stack([d[k] if k in d else torch.zeros_like(ref) for d in dicts])
    return out
