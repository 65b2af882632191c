"""Nano-EmoX, top to bottom.

    frames (B,T,3,H,W) --vision tower--> CLS per frame (B,T,Dv) --Q-Former--> (B,Nf,D)  -> <FrameHere> x Nf
    faces  (B,T,C,S,S) --face backbone--> (B,T,Df) --temporal queries + MLP--> (B,Nc,D) -> <FaceHere> x Nc
    audio  (B,K,N) / mel --speech encoder--> per-clip (B,K,Da) --Q-Former--> (B,Na,D)  -> <AudioHere> x Na
    multi-scale audio x visual --gated cross-attention experts--> (B,Nm,D)              -> <MultiHere> x Nm
    prompt ids --embeddings--> (B,L,D), placeholder rows replaced --> causal LM (+LoRA) --> answer

A transformers model (LLaVA / Qwen2-Audio style): `NanoEmoXForConditionalGeneration` is registered
with AutoModel, AutoModelForMultimodalLM and AutoModelForImageTextToText, supports gradient
checkpointing, and names its unsplittable blocks for FSDP / device maps. `forward` runs the public
`get_*_features` and splices their outputs into the prompt embeddings.

Frozen encoders' outputs (`EncoderOutputs`) are separable from everything trainable, so they can
be computed once per sample and cached (see nanoemox.data.features).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, AutoModelForMultimodalLM, GenerationMixin, PreTrainedModel

from ..errors import ConfigError, PlaceholderCountError
from ..prompts import MODALITY_ORDER, PLACEHOLDERS
from .adapters import FaceTemporalAdapter, QFormerAdapter
from .configuration import GROUPS, NanoEmoXConfig
from .encoders import AudioEncoder, FaceBackbone, VisionEncoder
from .fusion import FusionEncoder
from .language_model import add_lora, build_language_model
from .outputs import IGNORE_INDEX, EncoderOutputs, NanoEmoXOutput

__all__ = ["NanoEmoXForConditionalGeneration", "EncoderOutputs", "NanoEmoXOutput", "IGNORE_INDEX"]
log = logging.getLogger(__name__)
WEIGHTS_NAME = "model.safetensors"
ENCODERS = ("vision_encoder", "audio_encoder", "face_backbone")


class NanoEmoXForConditionalGeneration(PreTrainedModel, GenerationMixin):
    config_class = NanoEmoXConfig
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # Blocks FSDP wraps and device maps keep whole: the adapters' and experts' blocks here, plus
    # the language model's and encoders' own (decoder layers ...), gathered in __init__.
    _no_split_modules = ["CrossBlock", "FusionExpert"]

    def __init__(self, config: NanoEmoXConfig):
        super().__init__(config)
        self.vision_encoder = VisionEncoder(config.vision)
        self.audio_encoder = AudioEncoder(config.audio)
        self.face_backbone = FaceBackbone(config.face)
        lm, tokenizer = build_language_model(config.text)
        self.tokenizer = tokenizer
        D = lm.config.hidden_size
        ad, fu, tk = config.adapters, config.fusion, config.tokens
        Dv, Da, Df = self.vision_encoder.hidden_size, self.audio_encoder.hidden_size, self.face_backbone.feature_dim
        self.visual_adapter = QFormerAdapter(Dv, D, tk.frame, config.vision.num_frames, ad.qformer_hidden, ad.qformer_layers, ad.qformer_heads, ad.qformer_ffn, ad.dropout)
        self.audio_adapter = QFormerAdapter(Da, D, tk.audio, config.audio.num_clips, ad.qformer_hidden, ad.qformer_layers, ad.qformer_heads, ad.qformer_ffn, ad.dropout)
        self.face_adapter = FaceTemporalAdapter(Df, D, tk.face, config.vision.num_frames, ad.face_hidden, ad.face_heads, ad.face_layers, ad.dropout)
        self.fusion = FusionEncoder(Da, Dv, D, config.num_experts, tk.multi, fu.hidden, fu.heads, fu.ffn, fu.gate_hidden, fu.dropout, shared_projections=fu.shared_projections)
        self.language_model = add_lora(lm, config.lora)
        self.placeholder_ids = {m: tokenizer.convert_tokens_to_ids(PLACEHOLDERS[m]) for m in MODALITY_ORDER}
        # Rows of the embedding matrix that nanoemox added (placeholders): saved with the adapters.
        # They sit after the original vocabulary, so the first placeholder id marks the boundary.
        self.base_vocab_size = min(self.placeholder_ids.values())
        self._no_split_modules = sorted(
            set(type(self)._no_split_modules).union(*(m._no_split_modules or [] for m in self.modules() if isinstance(m, PreTrainedModel) and m is not self))
        )
        self.post_init()
        self.phase: str | None = None
        self.set_phase(None)
        self.eval()  # like from_pretrained in transformers: inference mode until training asks

    def init_weights(self):
        """Every part initialises itself (pretrained parts are loaded, adapters use PyTorch's
        defaults): transformers' re-initialisation pass would overwrite loaded encoder weights."""

    # ---------------------------------------------------------------- building blocks
    @property
    def device(self) -> torch.device:
        return next(self.audio_adapter.parameters()).device

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    def encode(
        self,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        face_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
    ) -> EncoderOutputs:
        """Run the encoders on whichever modalities are given (the cacheable part)."""
        out = EncoderOutputs()
        if pixel_values is not None:
            out.frame_cls, out.frame_ms = self.vision_encoder(pixel_values)  # (B,T,Dv), (B,T,E,Dv)
            out.frame_mask = _mask(frame_mask, pixel_values.shape[:2], pixel_values.device)
        if audio_values is not None:
            out.audio_clip, out.audio_ms = self.audio_encoder(audio_values)  # (B,K,Da), (B,K,E,Da)
            K = self.config.audio.num_clips
            out.audio_mask = _mask(audio_mask, (audio_values.shape[0], K), audio_values.device)
        if face_values is not None:
            out.face = self.face_backbone(face_values)  # (B,T,Df)
            out.face_mask = _mask(face_mask, face_values.shape[:2], face_values.device)
        return out

    def get_visual_features(self, pixel_values=None, frame_mask=None, encoder_outputs: EncoderOutputs | None = None) -> torch.Tensor:
        """Frames (B, T, 3, H, W), or their encoder outputs -> <FrameHere> embeddings (B, N_frame, D)."""
        enc = encoder_outputs if encoder_outputs is not None else self.encode(pixel_values=pixel_values, frame_mask=frame_mask)
        return self.visual_adapter(enc.frame_cls, enc.frame_mask)

    def get_audio_features(self, audio_values=None, audio_mask=None, encoder_outputs: EncoderOutputs | None = None) -> torch.Tensor:
        """Audio clips, or their encoder outputs -> <AudioHere> embeddings (B, N_audio, D)."""
        enc = encoder_outputs if encoder_outputs is not None else self.encode(audio_values=audio_values, audio_mask=audio_mask)
        return self.audio_adapter(enc.audio_clip, enc.audio_mask)

    def get_face_features(self, face_values=None, face_mask=None, encoder_outputs: EncoderOutputs | None = None) -> torch.Tensor:
        """Face crops (B, T, C, S, S), or their encoder outputs -> <FaceHere> embeddings (B, N_face, D)."""
        enc = encoder_outputs if encoder_outputs is not None else self.encode(face_values=face_values, face_mask=face_mask)
        return self.face_adapter(enc.face, enc.face_mask)

    def get_fusion_features(
        self, pixel_values=None, audio_values=None, frame_mask=None, audio_mask=None, encoder_outputs: EncoderOutputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames + audio -> (<MultiHere> embeddings (B, N_multi, D), gate weights (B, E)).
        A sample without real frames or without real audio has NaN gate weights (no fusion)."""
        enc = encoder_outputs
        if enc is None:
            enc = self.encode(pixel_values=pixel_values, frame_mask=frame_mask, audio_values=audio_values, audio_mask=audio_mask)
        tokens, gate = self.fusion(enc.audio_ms, enc.frame_ms, enc.audio_mask, enc.frame_mask)
        both = enc.audio_mask.any(-1) & enc.frame_mask.any(-1)  # (B,) fusion exists for the sample
        return tokens, gate.masked_fill(~both.unsqueeze(-1), float("nan"))

    def project(self, enc: EncoderOutputs) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The get_*_features of every modality present in `enc`: placeholder embeddings per
        modality (B, N_m, D), and the fusion gate (B, E) or None."""
        feats: dict[str, torch.Tensor] = {}
        gate = None
        if enc.frame_cls is not None:
            feats["frame"] = self.get_visual_features(encoder_outputs=enc)
        if enc.audio_clip is not None:
            feats["audio"] = self.get_audio_features(encoder_outputs=enc)
        if enc.face is not None:
            feats["face"] = self.get_face_features(encoder_outputs=enc)
        if enc.frame_ms is not None and enc.audio_ms is not None:
            feats["multi"], gate = self.get_fusion_features(encoder_outputs=enc)
        return feats, gate

    def splice(self, input_ids: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Prompt embeddings (B, L, D) with every placeholder row replaced by its modality embedding
        (masked scatter, in order). Per sample and modality the prompt must hold either no
        placeholder or exactly as many as the adapter produces; one for a modality that was not
        given is an error too."""
        embeds = self.get_input_embeddings()(input_ids)  # (B, L, D)
        for m in MODALITY_ORDER:
            pos = input_ids == self.placeholder_ids[m]  # (B, L)
            counts = pos.sum(1)  # (B,)
            if not bool(counts.any()):
                continue
            if m not in feats:
                raise PlaceholderCountError(f"the prompt holds {PLACEHOLDERS[m]} tokens but no {m} input was given")
            f = feats[m]  # (B, N, D)
            bad = (counts != 0) & (counts != f.shape[1])
            if bool(bad.any()):
                b = int(bad.nonzero()[0, 0])
                raise PlaceholderCountError(
                    f"sample {b}: the prompt holds {int(counts[b])} {PLACEHOLDERS[m]} tokens but the {m} adapter gives {f.shape[1]} features"
                )
            present = counts > 0
            embeds = embeds.masked_scatter(pos.unsqueeze(-1), f[present].to(embeds.dtype).reshape(-1, f.shape[-1]))
        return embeds

    # ---------------------------------------------------------------- forward / generate
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        encoder_outputs: EncoderOutputs | None = None,
        **media: torch.Tensor,
    ) -> NanoEmoXOutput:
        enc = encoder_outputs if encoder_outputs is not None else self.encode(**media)
        feats, gate = self.project(enc)
        embeds = self.splice(input_ids, feats)  # (B, L, D)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding safe
        if labels is None:
            out = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids)
            return NanoEmoXOutput(loss=None, logits=out.logits, gate_weights=gate)
        # Training: the LM head runs only where a next token is scored (the answer), not over the
        # whole prompt -- with a 49k vocabulary that is most of the head's cost.
        hidden = self.language_model.base_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        targets = labels[:, 1:]  # (B, L-1): token t+1 is predicted at position t
        keep = targets != IGNORE_INDEX
        logits = self.get_output_embeddings()(hidden[:, :-1][keep])  # (N_answer, V)
        loss = nn.functional.cross_entropy(logits.float(), targets[keep]) if bool(keep.any()) else hidden.sum() * 0.0
        return NanoEmoXOutput(loss=loss, logits=logits, gate_weights=gate)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: EncoderOutputs | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        use_cache: bool = True,
        return_gate: bool = False,
        media: dict[str, torch.Tensor] | None = None,
        **generate_kwargs: Any,
    ):
        """Greedy by default. Modality features are computed once and spliced into the prompt
        embeddings; decoding then runs on the LM alone (with its KV cache unless use_cache=False).
        Returns new token ids (B, <=max_new_tokens) [and the gate weights]."""
        enc = encoder_outputs if encoder_outputs is not None else self.encode(**(media or {}))
        feats, gate = self.project(enc)
        embeds = self.splice(input_ids, feats)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tok = self.tokenizer
        eos = [tok.eos_token_id] + ([tok.convert_tokens_to_ids("<|endoftext|>")] if "<|endoftext|>" in tok.get_vocab() else [])
        kwargs = dict(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            use_cache=use_cache,
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(set(eos)),
            suppress_tokens=list(self.placeholder_ids.values()),
        )
        if not do_sample:  # silence "temperature/top_p is ignored" warnings from generation configs
            kwargs.update(temperature=None, top_p=None, top_k=None)
        kwargs.update(generate_kwargs)
        ids = self.language_model.generate(**kwargs)
        return (ids, gate) if return_gate else ids

    # ---------------------------------------------------------------- phases and parameters
    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
        for name, p in self.named_parameters():
            head = name.split(".", 1)[0]
            if head == "language_model":
                groups["lora" if "lora_" in name else "language_model"].append((name, p))
            else:
                groups[head].append((name, p))
        return groups

    def set_phase(self, phase: str | None) -> None:
        """Make trainable exactly the groups the config names for `phase` and freeze the rest
        (None: freeze everything)."""
        if phase is not None and phase not in self.config.phases:
            raise ConfigError(f"unknown phase {phase!r} (config has {', '.join(self.config.phases)})")
        wanted = set(self.config.phases.get(phase, [])) if phase else set()
        for group, params in self.parameter_groups().items():
            for _, p in params:
                p.requires_grad_(group in wanted)
        self.phase = phase

    def freeze(self, groups: list[str] | None = None) -> None:
        """Freeze the named parameter groups (default: all); never unfreezes anything."""
        names = set(GROUPS if groups is None else groups)
        unknown = names - set(GROUPS)
        if unknown:
            raise ConfigError(f"freeze: unknown part(s) {sorted(unknown)}; known: {', '.join(GROUPS)}")
        for group, params in self.parameter_groups().items():
            if group in names:
                for _, p in params:
                    p.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen pretrained parts stay in eval mode (no dropout, fixed norms) whatever the phase.
        for g in ENCODERS:
            part = getattr(self, g)
            if not any(p.requires_grad for p in part.parameters()):
                part.eval()
        return self

    # ---------------------------------------------------------------- save / load
    def _base_prefixes(self) -> list[str]:
        """State-dict prefixes of frozen pretrained parts, referenced by path instead of saved."""
        c, trained = self.config, self.config.trained_groups()
        out = []
        for group, src in (("vision_encoder", c.vision.source), ("audio_encoder", c.audio.source), ("face_backbone", c.face.source), ("language_model", c.text.source)):
            if src != "random" and group not in trained:
                out.append(group + ".")
        return out

    def save_pretrained(self, save_directory: str | Path, adapters_only: bool = True, **kwargs: Any) -> Path:
        """Write config.json, model.safetensors and the tokenizer, atomically (a folder that
        `AutoModel.from_pretrained` loads).

        adapters_only=True leaves out frozen pretrained parts (they are rebuilt from the sources the
        config names); everything trained or randomly initialised is always saved."""
        from safetensors.torch import save_file

        from ..storage import atomic_path

        base = self._base_prefixes() if adapters_only else []
        state = {}
        for k, v in self.state_dict().items():
            if any(k.startswith(p) for p in base) and "lora_" not in k:
                continue
            state[k] = v.detach().contiguous().cpu()
        if "language_model." in base:  # keep the rows nanoemox added to the embeddings
            state.update(self._added_rows())
        directory = Path(save_directory)
        self.config.architectures = [type(self).__name__]
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            self.config.save(tmp)
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "nanoemox": "1", "adapters_only": str(adapters_only)})
            self.tokenizer.save_pretrained(tmp)
            (tmp / "nanoemox.json").write_text(json.dumps({"base_parts": [p.rstrip(".") for p in base], "phase": self.phase}, indent=2) + "\n")
        return directory

    def _added_rows(self) -> dict[str, torch.Tensor]:
        n = self.base_vocab_size
        out = {"extra.input_embeddings_added": self.get_input_embeddings().weight[n:].detach().clone()}
        head = self.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != self.get_input_embeddings().weight.data_ptr():
            out["extra.output_embeddings_added"] = head.weight[n:].detach().clone()
        return out

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args, config: NanoEmoXConfig | None = None,
                        device_map=None, dtype=None, **kwargs: Any) -> "NanoEmoXForConditionalGeneration":
        """Load a folder written by save_pretrained (also what AutoModel.from_pretrained calls).
        Frozen base parts come from the sources the config names; `device_map` may be one device
        (or {"": device}, or "auto": the GPU when there is one); `dtype` casts the loaded model."""
        from safetensors.torch import load_file

        device = _single_device(device_map) if device_map is not None else None  # fail before building
        directory = Path(pretrained_model_name_or_path)
        config = config if isinstance(config, NanoEmoXConfig) else NanoEmoXConfig.load(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise ConfigError(f"{directory}: no {WEIGHTS_NAME}")
        model = cls(config)
        state = load_file(str(weights))
        extra = {k: state.pop(k) for k in list(state) if k.startswith("extra.")}
        own = model.state_dict()
        unexpected = sorted(set(state) - set(own))
        if unexpected:
            raise ConfigError(f"{weights}: tensors not in this model: {', '.join(unexpected[:5])}")
        base = model._base_prefixes()
        missing = [k for k in own if k not in state and not (any(k.startswith(p) for p in base) and "lora_" not in k)]
        if missing:
            raise ConfigError(f"{weights}: missing tensors: {', '.join(missing[:5])}")
        model.load_state_dict(state, strict=False)
        n = model.base_vocab_size
        with torch.no_grad():
            if "extra.input_embeddings_added" in extra:
                model.get_input_embeddings().weight[n:] = extra["extra.input_embeddings_added"]
            if "extra.output_embeddings_added" in extra:
                model.get_output_embeddings().weight[n:] = extra["extra.output_embeddings_added"]
        meta = directory / "nanoemox.json"
        model.set_phase(None)
        if meta.is_file():
            model.phase = json.loads(meta.read_text()).get("phase")
        if dtype not in (None, "auto"):
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        if device is not None:
            model.to(device)
        return model

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "NanoEmoXForConditionalGeneration":
        from .presets import get_preset

        config = get_preset(name)
        if overrides:
            config = config.with_overrides(overrides)
        return cls(config)


def _mask(mask: torch.Tensor | None, shape, device) -> torch.Tensor:
    return torch.ones(shape, dtype=torch.bool, device=device) if mask is None else mask.bool()


def _single_device(device_map) -> torch.device:
    """The model is small enough for one device: a device, {"": device} or "auto"."""
    if isinstance(device_map, dict):
        if set(device_map) != {""}:
            raise ConfigError(f"device_map {device_map!r}: nanoemox places the whole model on one device ({{'': device}})")
        device_map = device_map[""]
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(f"cuda:{device_map}" if isinstance(device_map, int) else device_map)


AutoModel.register(NanoEmoXConfig, NanoEmoXForConditionalGeneration, exist_ok=True)
AutoModelForMultimodalLM.register(NanoEmoXConfig, NanoEmoXForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(NanoEmoXConfig, NanoEmoXForConditionalGeneration, exist_ok=True)
