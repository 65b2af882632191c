"""Smoke tests for the benchmark harness, the GPU check script and `nanoemox params --cost`.
No timing is asserted anywhere: benchmark figures are only checked for shape."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _repo_on_path():
    sys.path.insert(0, str(REPO))  # `benchmarks` is a top-level package next to src/
    yield
    sys.path.remove(str(REPO))


def test_harness_writes_a_table(tmp_path, monkeypatch):
    from benchmarks.__main__ import main

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nintro kept by the harness\n")
    assert main(["evaluation", "--preset", "tiny", "--repeats", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nintro kept by the harness\n")
    for needle in ("preset tiny", "- machine:", "cores", "torch", "- command: `python -m benchmarks",
                   "### evaluation: wheel metric on 10,000 samples", "| wheel set metric"):
        assert needle in text, needle


def test_unknown_benchmark_is_refused(tmp_path):
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit):
        main(["nope", "--out", str(tmp_path / "x.md")])


def test_gpu_check_script_syntax_and_cpu_smoke(capsys):
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")], check=True)
    from benchmarks.gpu_check import main

    assert main(["--device", "cpu", "--tiny", "--repeats", "1", "--prompt", "96", "--new-tokens", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["preset"] == "tiny" and res["train_batch"] == 3
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "phase3_step_cached_s", "phase3_step_recompute_s", "peak_memory_train_bytes"):
        assert res[k] > 0, k


def _tiny_model():
    from nanoemox.modeling.modeling_nanoemox import NanoEmoXForConditionalGeneration

    torch.manual_seed(0)
    return NanoEmoXForConditionalGeneration.from_preset("tiny")


def test_params_cost_json_tiny(capsys):
    """Parameter counts and weight bytes of `params --cost`, against torch's own counts of a built
    tiny model (numel per module, bytes of the tensors cast to each dtype)."""
    from nanoemox.cli import main

    assert main(["params", "--preset", "tiny", "--cost", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cost = out["cost"]
    model = _tiny_model()
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    assert cost["params"]["total"] == out["total"] == total
    for part in ("vision_encoder", "audio_encoder", "face_backbone"):
        assert cost["params"][part] == sum(p.numel() for p in getattr(model, part).parameters()), part
    adapters = sum(p.numel() for m in (model.visual_adapter, model.audio_adapter, model.face_adapter, model.fusion) for p in m.parameters())
    lora = sum(p.numel() for n, p in params.items() if ".lora_" in n)
    assert (cost["params"]["adapters_fusion"], cost["params"]["lora"]) == (adapters, lora)
    for key, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8)):
        assert cost["bytes"][key] == sum(p.detach().to(dtype).nbytes for p in params.values()), key
    f = cost["flops"]
    assert all(f[k] > 0 for k in ("vision_encoder", "audio_encoder", "face_backbone", "adapters_fusion"))
    assert "peer" not in cost and cost["assumptions"]


def test_llm_prefill_decode_and_kv_cache_match_torch():
    """The LLM's closed-form prefill / decode FLOPs equal torch's FlopCounterMode on the tiny LM
    (eager attention, so the attention matmuls are counted; LM head at the last position), and the
    KV-cache bytes per token equal the bytes transformers' cache actually holds in bf16."""
    from torch.utils.flop_counter import FlopCounterMode

    from nanoemox.modeling.cost import model_cost

    model = _tiny_model()
    cost = model_cost(model)
    lm = model.language_model
    lm.set_attn_implementation("eager")
    for L in map(int, cost["flops"]["llm_prefill"]):
        ids = torch.randint(0, 200, (1, L))
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            lm(input_ids=ids, logits_to_keep=1, use_cache=False)
        assert cost["flops"]["llm_prefill"][str(L)] == fc.get_total_flops(), L
        with torch.no_grad():
            cache = lm(input_ids=ids[:, :-1], use_cache=True).past_key_values
            with FlopCounterMode(display=False) as fc:  # one decode step attending to L positions
                lm(input_ids=ids[:, -1:], cache=cache, use_cache=True, logits_to_keep=1)
        assert cost["flops"]["llm_decode_per_token"][str(L)] == fc.get_total_flops(), L
    lm.to(torch.bfloat16)
    n = 10
    with torch.no_grad():
        cache = lm(input_ids=torch.randint(0, 200, (1, n)), use_cache=True).past_key_values
    held = sum(t.nbytes for layer in cache.layers for t in (layer.keys, layer.values))
    assert cost["kv_cache"]["bytes_per_token_bf16"] * n == held
    assert cost["kv_cache"]["bytes_per_token_fp32"] == 2 * cost["kv_cache"]["bytes_per_token_bf16"]


def test_cost_text_output(capsys):
    from nanoemox.cli import main

    assert main(["params", "--preset", "tiny", "--cost"]) == 0
    text = capsys.readouterr().out
    assert "nanoemox cost on paper" in text and "KV cache" in text and "assumptions:" in text


def test_analytic_flops_match_torch_counts():
    """The closed-form encoder / adapter FLOPs agree with torch's FlopCounterMode on the tiny preset."""
    from torch.utils.flop_counter import FlopCounterMode

    from nanoemox.modeling.cost import model_cost
    from nanoemox.modeling.modeling_nanoemox import NanoEmoXForConditionalGeneration

    with torch.device("meta"):  # shapes only; torch counts SDPA on meta (its CPU kernel goes uncounted)
        model = NanoEmoXForConditionalGeneration.from_preset("tiny")
    c = model.config
    cost = model_cost(model)["flops"]
    T, K, S = c.vision.num_frames, c.audio.num_clips, c.vision.image_size
    media = {"pixel_values": torch.empty(1, T, 3, S, S, device="meta"),
             "audio_values": torch.empty(1, K, int(c.audio.clip_seconds * c.audio.sample_rate), device="meta"),
             "face_values": torch.empty(1, T, 1, c.face.input_size, c.face.input_size, device="meta")}
    counted = {}
    with torch.no_grad():
        for key, part in (("pixel_values", "vision_encoder"), ("audio_values", "audio_encoder"), ("face_values", "face_backbone")):
            with FlopCounterMode(display=False) as fc:
                model.encode(**{key: media[key]})
            counted[part] = fc.get_total_flops()
        enc = model.encode(**media)
        with FlopCounterMode(display=False) as fc:
            model.project(enc)
        counted["adapters_fusion"] = fc.get_total_flops()
    for part, n in counted.items():
        assert cost[part] == pytest.approx(n, rel=0.05), part


def test_paper_llm_kv_and_prefill_formulas():
    from transformers import Qwen2Config

    from nanoemox.modeling.cost import PEER_LLM, kv_bytes_per_token, llm_flops, llm_shape

    qwen15 = llm_shape(Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, vocab_size=151936))
    assert kv_bytes_per_token(qwen15, 2) == 28 * 1024  # 2 x 28 layers x 2 KV heads x 128 x 2 bytes
    assert kv_bytes_per_token(llm_shape(Qwen2Config(**PEER_LLM)), 2) == 56 * 1024
    # ~2 x 1.31B non-embedding params per token, plus attention and the LM head
    per_token = llm_flops(qwen15, 256, 256) / 256
    assert 2.5e9 < per_token < 3.0e9
