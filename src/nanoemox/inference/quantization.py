"""int8 language model for CPU inference: weight-only int8, activations stay floating point.

Every nn.Linear of the language model (LoRA merged first) becomes an `Int8Linear`: its weight is
stored as int8 with one symmetric fp32 scale per output channel (|w| max / 127), and its input is
never quantised. The matmul runs in torch's `_weight_int8pack_mm` CPU kernel with the input cast to
bf16 (int8 weights widened inside the kernel, fp32 accumulation); the per-channel scale and the
bias are applied afterwards in fp32, so norms, attention softmax and the residual stream stay fp32.

Why not torch.ao dynamic quantisation (what `--quantize int8` did before): it also quantises each
layer's *input* to 8 bits with one scale for the whole tensor. SmolLM2's MLP down-projection inputs
carry a few huge channels (max |x| / rms(x) up to ~400 on the demo model), so one per-tensor scale
leaves the ordinary channels a handful of levels: 15% median relative output error on down_proj
(up to 39%), against 0.9% for weight-only int8, and greedy answers changed on most clips
(BENCHMARKS.md, "int8 vs fp32 on a trained model").
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

QUANTIZE_CHOICES = ("int8",)
# `_weight_int8pack_mm` (torch 2.13, x86) reads past the row when in_features is not a multiple of
# 16 (it crashed the process at 5, 8, 12, 20, 33, 36, 40 with some row counts); such layers use
# the dequantised weight instead (slow but exact; the presets' LM widths are all multiples of 16).
_KERNEL_K_MULTIPLE = 16


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (int8 weight, fp32 scale) with weight ~= q * scale[:, None]."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """A frozen nn.Linear with int8 weights (one fp32 scale per output channel) for CPU inference.

    state_dict: `qweight` (int8, out x in), `scale` (fp32, out) and `bias` when present; the names
    differ from nn.Linear's `weight` on purpose, so loading one into the other fails loudly instead
    of casting int8 codes to floats. `weight` gives the dequantised fp32 weight for inspection."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        # the kernel wants scales in the input's dtype; unit scales there, the real ones in fp32 after
        self.register_buffer("_unit", torch.ones(out_features, dtype=torch.bfloat16), persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        m = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, scale = quantize_weight(linear.weight)
        m.qweight.copy_(q)
        m.scale.copy_(scale)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach().float())
        return m

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        if self.in_features % _KERNEL_K_MULTIPLE or flat.shape[0] == 0:
            y = F.linear(flat.float(), self.weight)
        else:
            y = torch._weight_int8pack_mm(flat.to(torch.bfloat16).contiguous(), self.qweight, self._unit).float() * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8 weight-only"


def merge_lora(lm: nn.Module) -> None:
    """Fold every LoRA layer into its base nn.Linear (one matmul per layer) and drop the wrapper."""
    for name, module in list(lm.named_modules()):
        if hasattr(module, "lora_A") and hasattr(module, "base_layer") and hasattr(module, "merge"):
            if not getattr(module, "merged", False):
                module.merge()
            parent, _, child = name.rpartition(".")
            setattr(lm.get_submodule(parent) if parent else lm, child, module.base_layer)


def quantize_linears(root: nn.Module) -> int:
    """Replace every plain nn.Linear under `root` by an Int8Linear in place; returns how many."""
    targets = [n for n, m in root.named_modules() if type(m) is nn.Linear and "lora_" not in n]
    for name in targets:
        parent, _, child = name.rpartition(".")
        holder = root.get_submodule(parent) if parent else root
        setattr(holder, child, Int8Linear.from_linear(getattr(holder, child)))
    return len(targets)


def quantize_language_model(model: nn.Module, mode: str | None) -> nn.Module:
    """`--quantize int8`: the language model's linear layers (LM head included; LoRA merged first)
    become weight-only int8 for CPU inference. Encoders, adapters, fusion and the embedding table
    stay fp32. In place; returns the model."""
    if mode in (None, "", "none", "fp32"):
        return model
    if mode not in QUANTIZE_CHOICES:
        raise ConfigError(f"unknown quantize mode {mode!r} (choose from {', '.join(QUANTIZE_CHOICES)})")
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("--quantize int8 runs on CPU only (int8 CPU kernel); drop it or use --device cpu")
    lm = model.language_model
    merge_lora(lm)
    lm.requires_grad_(False)
    quantize_linears(lm)
    return model
