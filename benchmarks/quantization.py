"""Why dynamic int8 changed a trained model's answers and weight-only int8 does not (issue 16):
per layer of the language model, the relative output error of both schemes on the layer's real
inputs (prefill + first decoding steps of a few test clips), and how outlying those inputs are.

    python -m benchmarks.quantization MODEL_DIR TEST_MANIFEST [CLIPS]
"""
from __future__ import annotations

import json
import statistics
import sys
import warnings

import torch
from torch import nn
from torch.nn import functional as F

KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


def _capture_inputs(analyzer, samples, per_layer: int = 4) -> dict[str, list[torch.Tensor]]:
    """The first `per_layer` inputs every LM linear layer sees while two tasks of each clip decode 4 tokens."""
    from nanoemox.inference.analyzer import Row
    from nanoemox.inference.generation import RowControl

    lm = analyzer.model.language_model
    caps: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def grab(_mod, inp, _out):
            if len(caps.setdefault(name, [])) < per_layer:
                caps[name].append(inp[0].detach().reshape(-1, inp[0].shape[-1]).clone())
        return grab

    handles = [m.register_forward_hook(hook(n)) for n, m in lm.named_modules() if type(m) is nn.Linear]
    try:
        for s in samples:
            (e,) = analyzer.encode([analyzer.load_media(s.media_path())])
            tasks = s.tasks()[:2]
            analyzer.generate_batch([Row(e, t, s.transcript, s.history, (s.candidates or {}).get(t)) for t in tasks], [RowControl(4) for _ in tasks])
    finally:
        for h in handles:
            h.remove()
    return caps


def layer_errors(model_dir: str, manifest: str, clips: int = 2) -> dict[str, dict[str, float]]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    from nanoemox.data.schema import read_manifest
    from nanoemox.inference.analyzer import Analyzer
    from nanoemox.inference.quantization import Int8Linear, merge_lora

    analyzer = Analyzer.from_pretrained(model_dir, device="cpu")
    merge_lora(analyzer.model.language_model)  # as --quantize does: the merged weights are what gets quantised
    lm = analyzer.model.language_model
    with torch.no_grad():
        caps = _capture_inputs(analyzer, read_manifest(manifest)[:clips])
        rows = []
        for name, lin in ((n, m) for n, m in lm.named_modules() if type(m) is nn.Linear):
            lin.qconfig = per_channel_dynamic_qconfig  # what the old --quantize int8 ran (torch.ao quantize_dynamic)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dynamic = DynamicLinear.from_float(lin)
            weight_only = Int8Linear.from_linear(lin)
            err_d = err_w = ref = 0.0
            outlier = 0.0
            for x in caps[name]:
                y = F.linear(x, lin.weight, lin.bias)
                err_d += (dynamic(x) - y).pow(2).sum().item()
                err_w += (weight_only(x) - y).pow(2).sum().item()
                ref += y.pow(2).sum().item()
                outlier = max(outlier, (x.abs().max() / x.pow(2).mean().sqrt()).item())
            rows.append((name, (err_d / ref) ** 0.5, (err_w / ref) ** 0.5, outlier))
    out = {}
    for kind in KINDS:
        sel = [r for r in rows if r[0].endswith(kind)]
        out[kind] = {"layers": len(sel),
                     "dynamic_rel_err_median": round(statistics.median(r[1] for r in sel), 4), "dynamic_rel_err_max": round(max(r[1] for r in sel), 4),
                     "weight_only_rel_err_median": round(statistics.median(r[2] for r in sel), 4), "weight_only_rel_err_max": round(max(r[2] for r in sel), 4),
                     "input_max_over_rms_median": round(statistics.median(r[3] for r in sel), 1), "input_max_over_rms_max": round(max(r[3] for r in sel), 1)}
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(layer_errors(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2), indent=1))
