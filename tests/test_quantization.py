"""Weight-only int8 language model (`--quantize int8`): layer error within the bound the scheme
implies, greedy answers of a trained tiny model unchanged, state_dict round trip, CLI flag."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from nanoemox.errors import ConfigError
from nanoemox.inference.analyzer import Analyzer
from nanoemox.inference.quantization import (
    Int8Linear,
    quantize_language_model,
    quantize_weight,
)

BF16_UNIT_ROUNDOFF = 2.0 ** -8  # bf16 keeps 8 significant bits; round-to-nearest error <= 2^-8 relative


def _error_bound(x: torch.Tensor, weight: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
    """Worst case of |int8 layer - fp32 layer| per output, from the scheme alone: every weight is
    off by at most half its row's step (step = row max |w| / 127); the input is rounded to bf16
    before the matmul and the (unscaled) product rounded to bf16 after it, each within one bf16
    unit roundoff; fp32 accumulation adds a little slack."""
    step = weight.abs().amax(dim=1) / 127
    abs_x = x.abs().sum(dim=-1, keepdim=True)  # sum_k |x_k|
    w_err = abs_x * step / 2
    in_err = BF16_UNIT_ROUNDOFF * (x.abs() @ weight.abs().T + abs_x * step / 2)
    out_err = BF16_UNIT_ROUNDOFF * (y_ref.abs() + w_err + in_err)
    return 1.01 * (w_err + in_err + out_err) + 1e-6


def test_quantize_weight_is_symmetric_per_output_channel():
    w = torch.randn(24, 48) * torch.logspace(-3, 1, 24)[:, None]  # rows of very different size
    q, scale = quantize_weight(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert torch.equal(q.abs().amax(dim=1), torch.full((24,), 127, dtype=torch.int8))  # each row's largest |w| -> +-127
    assert torch.all((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 * (1 + 1e-5))


@pytest.mark.parametrize("in_features", [576, 5])  # the int8 kernel path; an odd width takes the dequantised path
def test_int8_linear_error_within_the_quantisation_bound(in_features):
    torch.manual_seed(0)
    lin = nn.Linear(in_features, 96, bias=True)
    x = torch.randn(3, 7, in_features)
    x[..., 0] *= 200  # one outlier channel, as in SmolLM2's down-projection inputs
    q = Int8Linear.from_linear(lin)
    with torch.no_grad():
        y_ref = lin(x)
        y = q(x)
        bound = _error_bound(x, lin.weight, y_ref - lin.bias)
    assert y.shape == y_ref.shape and y.dtype == torch.float32
    assert torch.all((y - y_ref).abs() <= bound)
    # and it is a real approximation, not a copy of the fp32 layer
    assert (y - y_ref).abs().max() > 0
    assert ((y - y_ref).norm() / y_ref.norm()) < 0.02


def _memorising_lm(seqs: torch.Tensor) -> LlamaForCausalLM:
    """A tiny real Llama trained until it reproduces `seqs` greedily from their first token."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=48, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
    lm = LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    for _ in range(300):
        loss = lm(input_ids=seqs, labels=seqs).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lm.eval()


def _greedy(lm: nn.Module, seqs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lm.generate(seqs[:, :1], attention_mask=torch.ones_like(seqs[:, :1]), max_new_tokens=seqs.shape[1] - 1,
                           min_new_tokens=seqs.shape[1] - 1, do_sample=False, pad_token_id=0)


def test_trained_tiny_model_keeps_its_greedy_answers_and_state_dict_round_trips(tmp_path):
    seqs = torch.randint(3, 48, (6, 20), generator=torch.Generator().manual_seed(1))  # no 0-2: Llama's pad/bos/eos ids
    seqs[:, 0] = torch.arange(3, 9)  # distinct first tokens: each sequence is recalled from its first token
    fp32 = _memorising_lm(seqs)
    assert torch.equal(_greedy(fp32, seqs), seqs)  # trained: recalls every sequence

    holder = nn.Module()
    holder.language_model = fp32
    quantize_language_model(holder, "int8")
    lm = holder.language_model
    n_int8 = sum(isinstance(m, Int8Linear) for m in lm.modules())
    assert n_int8 == 7 * 2 + 1 and not any(type(m) is nn.Linear for m in lm.modules())  # q k v o gate up down x 2 layers, head
    assert torch.equal(_greedy(lm, seqs), seqs)

    # state_dict: int8 codes + fp32 scales, through safetensors into a freshly quantised copy
    sd = {k: v.contiguous() for k, v in lm.state_dict().items()}
    assert sd["model.layers.0.mlp.down_proj.qweight"].dtype == torch.int8
    save_file(sd, str(tmp_path / "int8.safetensors"))
    other = nn.Module()
    other.language_model = LlamaForCausalLM(lm.config)
    quantize_language_model(other, "int8")
    other.language_model.load_state_dict(load_file(str(tmp_path / "int8.safetensors")))
    assert torch.equal(_greedy(other.language_model.eval(), seqs), seqs)
    # an int8 state_dict does not load silently into a float model
    with pytest.raises(RuntimeError, match="qweight"):
        LlamaForCausalLM(lm.config).load_state_dict(sd)


def test_analyzer_int8_keeps_adapters_float_and_rejects_unknown_modes():
    fp = Analyzer.from_preset("tiny")
    q = Analyzer.from_preset("tiny", quantize="int8")
    assert q.quantize == "int8"
    assert all(isinstance(m, Int8Linear) for n, m in q.model.language_model.named_modules() if isinstance(m, (nn.Linear, Int8Linear)))
    outside = [m for n, m in q.model.named_modules() if type(m) is nn.Linear and not n.startswith("language_model")]
    assert outside and all(m.weight.dtype == torch.float32 for m in outside)
    # same seed: the int8 head is the fp32 head within half a quantisation step per weight
    head_fp, head_q = fp.model.language_model.lm_head.weight, q.model.language_model.lm_head.weight
    assert torch.all((head_q - head_fp).abs() <= head_fp.abs().amax(dim=1, keepdim=True) / 254 * (1 + 1e-5))
    with pytest.raises(ConfigError, match="int4"):
        Analyzer.from_preset("tiny", quantize="int4")


def test_cli_quantize_flag(talking_clip, capsys, monkeypatch):
    from nanoemox.cli import main
    from nanoemox.inference import analyzer as analyzer_module

    seen = []  # a spy around the real function: which mode the CLI asked for, and what it produced
    real = analyzer_module.quantize_language_model
    monkeypatch.setattr(analyzer_module, "quantize_language_model",
                        lambda model, mode: seen.append((mode, sum(isinstance(m, Int8Linear) for m in real(model, mode).modules()))) or model)
    args = ["analyze", str(talking_clip), "--preset", "tiny", "--task", "msa", "--transcript", "hi", "--max-new-tokens", "6", "--json"]
    assert main(args + ["--quantize", "int8"]) == 0
    assert seen == [("int8", 7 * 2 + 1)]
    via_cli = json.loads(capsys.readouterr().out)["results"]["msa"]["raw"]
    direct = Analyzer.from_preset("tiny", quantize="int8").analyze(talking_clip, tasks="msa", transcript="hi", max_new_tokens=6)
    assert via_cli == direct.results["msa"].raw
    with pytest.raises(SystemExit):
        main(args + ["--quantize", "int4"])
    assert "int4" in capsys.readouterr().err
