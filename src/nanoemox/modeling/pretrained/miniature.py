"""The paper's pretrained parts in miniature, in their real formats.

`write_miniature(out)` writes, with random weights:
- `clip/`: a transformers `CLIPVisionModel` folder (save_pretrained) with 24 layers, as CLIP
  ViT-L/14 has, so the paper's fusion layers 12/16/22 and feature layer -2 exist;
- `hubert/`: a `HubertModel` folder with 24 layers (HuBERT-L's layer norm layout and conv strides,
  so 2 s clips give 100 frames as the real one does) for fusion layers 16/18/22;
- `facexformer/facexformer.pt`: FaceXFormer's release layout (torch.save of
  {"state_dict_backbone": ...}, torchvision swin_b names, four Swin stages of depths 2/2/18/2, the
  per-stage projections, the fusion conv and decoder tensors);
- `qwen2/`: a `Qwen2ForCausalLM` folder with a byte-level BPE `Qwen2Tokenizer` (ChatML specials
  `<|im_start|>`, `<|im_end|>`, `<|endoftext|>`, a Qwen-style chat template).
Widths are tiny; only the depths the paper preset indexes into are kept. Point NANOEMOX_CLIP_PATH,
NANOEMOX_HUBERT_PATH, NANOEMOX_FACE_PATH and NANOEMOX_LLM_PATH at them and the paper preset loads
them exactly as it loads the real checkpoints. `nanoemox make-miniature OUT` runs this.
"""
from __future__ import annotations

from pathlib import Path

import torch

from nanoemox.storage import atomic_path

ENV = {"clip": "NANOEMOX_CLIP_PATH", "hubert": "NANOEMOX_HUBERT_PATH", "facexformer": "NANOEMOX_FACE_PATH", "qwen2": "NANOEMOX_LLM_PATH"}
FACE_FILE = "facexformer.pt"
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def write_miniature(out: str | Path, seed: int = 0, width: int = 16) -> dict[str, Path]:
    """Write the four checkpoints under `out`; returns {environment variable: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    paths = {
        "clip": _save_hf(out / "clip", _clip(width)),
        "hubert": _save_hf(out / "hubert", _hubert(width)),
        "facexformer": _save_face(out / "facexformer", width),
        "qwen2": _save_qwen2(out / "qwen2", 2 * width),
    }
    return {ENV[k]: v for k, v in paths.items()}


def _save_hf(path: Path, model) -> Path:
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
    return path


def _clip(width: int):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return CLIPVisionModel(CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=24, num_attention_heads=2,
                                            image_size=32, patch_size=8, projection_dim=width))


def _hubert(width: int):
    from transformers import HubertConfig, HubertModel

    return HubertModel(HubertConfig(
        hidden_size=width, intermediate_size=2 * width, num_hidden_layers=24, num_attention_heads=2,
        conv_dim=[8] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2],  # HuBERT's 320x stride
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,  # HuBERT-L's layout
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    ))


def _save_face(path: Path, width: int) -> Path:
    """FaceXFormer's release file: the encoder's tensors plus a sample of the task decoder's."""
    from .facexformer import FaceXFormerEncoder

    enc = FaceXFormerEncoder(embed_dim=width // 2, depths=(2, 2, 18, 2), num_heads=(1, 1, 2, 2), window_size=7, fused_dim=width)
    state = dict(enc.state_dict())
    d = width
    state.update({
        "pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, d // 2),
        "face_decoder.landmarks_token.weight": torch.randn(1, d),
        "face_decoder.mask_tokens.weight": torch.randn(11, d),
        "face_decoder.landmarks_prediction_head.layers.2.weight": torch.randn(136, d),
    })
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        torch.save({"state_dict_backbone": state}, tmp / FACE_FILE)
    return path / FACE_FILE


def miniature_tokenizer():
    """A byte-level BPE trained on nanoemox's own prompt and answer vocabulary, as a Qwen2Tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    from ... import prompts
    from ...data.schema import TASKS

    spec = prompts.PromptSpec(multi=1, audio=1, face=1, frame=1)
    corpus = [prompts.SYSTEM_PROMPT, *(prompts.user_turn(t, spec, "I can't believe it happened again!") for t in TASKS),
              "The most likely label is", "The character's emotional state is", "Firstly, the event scenario is", "Secondly, the speaker's emotion is",
              "Thirdly, the cause is", "Fourthly, the goal of the response is", "I am so sorry to hear that. That sounds really hard.",
              "The subtitle of this clip is", "There is no subtitle for this clip.", "The dialogue so far:"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(corpus * 4, trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    import json

    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    vocab = {"<|endoftext|>": 0, **{k: v + 1 for k, v in model["vocab"].items()}}
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def _save_qwen2(path: Path, width: int) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = miniature_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=2048, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return path
