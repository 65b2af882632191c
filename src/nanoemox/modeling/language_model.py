"""The language model and its tokenizer: any transformers causal LM, plus nanoemox's special tokens."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..prompts import PLACEHOLDERS
from .configuration import LoraSettings, TextConfig

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def byte_tokenizer():
    """A byte-level tokenizer built in memory (no files): 256 byte tokens + ChatML specials.
    Used with randomly initialised language models (tiny preset, meta-device counting)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": "<|im_start|>"})
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_language_model(cfg: TextConfig, device: str | torch.device | None = None) -> tuple[nn.Module, object]:
    """Return (causal LM, tokenizer) with placeholder tokens added and embeddings resized."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if cfg.source == "random":
        tokenizer = byte_tokenizer() if cfg.tokenizer == "byte" else AutoTokenizer.from_pretrained(_dir(cfg.tokenizer))
        add_special_tokens(tokenizer)
        mc = dict(cfg.model_config)
        mc.setdefault("vocab_size", len(tokenizer))
        mc.setdefault("pad_token_id", tokenizer.pad_token_id)
        mc.setdefault("eos_token_id", tokenizer.eos_token_id)
        mc.setdefault("bos_token_id", tokenizer.bos_token_id)
        config = AutoConfig.for_model(cfg.model_type, **mc)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        return model, tokenizer
    if cfg.source == "builtin":
        from .pretrained.smollm2 import smollm2_dir

        path = str(smollm2_dir())
    elif cfg.source == "path":
        path = _dir(cfg.path)
    else:
        raise ConfigError(f"text source {cfg.source!r} is not supported (random | builtin | path)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if cfg.source == "path":  # config.json then records the loaded LM's own shapes, not the preset's
        from .encoders import record_loaded_config

        record_loaded_config(cfg, "model_config", model.config)
        cfg.model_type = model.config.model_type
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if add_special_tokens(tokenizer) and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return model, tokenizer


def add_lora(lm: nn.Module, lc: LoraSettings) -> nn.Module:
    """Inject LoRA layers (peft) into the LM in place. B starts at zero, so until phase 3 trains
    them the LM computes exactly what the base model does. Parameter names gain `lora_A/lora_B`."""
    from peft import LoraConfig, inject_adapter_in_model

    names = {n.rsplit(".", 1)[-1] for n, _ in lm.named_modules()}
    targets = [t for t in lc.target_modules if t in names]
    if not targets:
        raise ConfigError(f"LoRA target modules {lc.target_modules} match nothing in the language model")
    peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=targets, bias="none")
    return inject_adapter_in_model(peft_cfg, lm)


def add_special_tokens(tokenizer) -> int:
    """Add the placeholder tokens (and ChatML markers if missing). Returns how many were added."""
    specials = list(PLACEHOLDERS.values())
    for t in ("<|im_start|>", "<|im_end|>"):
        if t not in tokenizer.get_vocab():
            specials.append(t)
    return tokenizer.add_special_tokens({"additional_special_tokens": specials}, replace_extra_special_tokens=False)


def _dir(path: str | None) -> str:
    from pathlib import Path

    if not path or not Path(path).is_dir():
        raise ConfigError(f"language model: local folder {path!r} not found (nanoemox never downloads; pass a local Hugging Face folder)")
    return path
