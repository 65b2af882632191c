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


def test_params_cost_json_tiny(capsys):
    from nanoemox.cli import main

    assert main(["params", "--preset", "tiny", "--cost", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cost = out["cost"]
    assert cost["params"]["total"] == out["total"]
    assert cost["bytes"] == {"fp32": 4 * out["total"], "bf16": 2 * out["total"], "int8": out["total"]}
    s = cost["llm"]
    assert cost["kv_cache"]["bytes_per_token_bf16"] == 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * 2
    f = cost["flops"]
    assert all(f[k] > 0 for k in ("vision_encoder", "audio_encoder", "face_backbone", "adapters_fusion"))
    prefill = [f["llm_prefill"][k] for k in sorted(f["llm_prefill"], key=int)]
    assert prefill == sorted(prefill) and "peer" not in cost
    assert cost["assumptions"]


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
