"""What a model costs on paper: parameters, bytes, FLOPs per sample and KV-cache bytes per token.

Everything is computed from the configs (shapes), never timed, so it works for the paper preset
built on the meta device. Conventions (the usual ones, e.g. Kaplan et al. / Chinchilla):

- one multiply-add = 2 FLOPs; only matrix products and convolutions are counted (norms,
  activations, softmax and residual adds are a few percent at most);
- attention costs 4 * Lq * Lk * d per layer (QK^T and AV), counted over the full square, as
  dense SDPA kernels compute it (a causal kernel skips about half of it);
- the LLM prefill is 2 * (non-embedding matmul params, LoRA unmerged) * L + attention, plus the
  LM head at the last position only (what generate computes);
- KV cache per token = 2 (K and V) * layers * kv_heads * head_dim * bytes per value.

`model_cost(model)` returns a JSON-ready dict; `print_cost(cost, console)` prints it. For the
paper preset the dict also holds `peer`: an AffectGPT-sized model (Qwen2.5-7B-shaped LLM + the same
encoders, adapters and token counts, ~8.3B) computed the same way.
"""
from __future__ import annotations

from typing import Any

# Prompt lengths the prefill is costed at: the modality tokens the config injects plus text.
TYPICAL_TEXT_TOKENS = 187  # a MER prompt with a one-sentence subtitle: 69 + 187 = 256 at paper scale
BYTES = {"fp32": 4, "bf16": 2, "int8": 1}
PARTS = ("vision_encoder", "audio_encoder", "face_backbone", "adapters_fusion", "lora", "language_model")
# Qwen2.5-7B-Instruct's shape: the LLM of an AffectGPT-sized (8.3B) peer.
PEER_LLM = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                vocab_size=152064, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
PEER_NAME = "AffectGPT-sized peer (Qwen2.5-7B-shaped LLM + the same encoders)"


# ---------------------------------------------------------------- building blocks (FLOPs, forward)
def encoder_layer_flops(tokens: int, hidden: int, ffn: int) -> int:
    """One pre/post-LN transformer encoder layer with full self-attention and a 2-matrix MLP."""
    return 2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 4 * tokens * tokens * hidden


def cross_block_flops(queries: int, memory: int, hidden: int, ffn: int, self_attention: bool) -> int:
    """nanoemox's CrossBlock: [self-attention over queries], cross-attention to memory, MLP."""
    f = 2 * queries * 2 * hidden * hidden + 2 * memory * 2 * hidden * hidden + 4 * queries * memory * hidden  # q,o + k,v + attn
    f += 2 * queries * 2 * hidden * ffn
    if self_attention:
        f += 2 * queries * 4 * hidden * hidden + 4 * queries * queries * hidden
    return f


def vit_flops(cfg, frames: int) -> int:
    """CLIP-vision-like ViT: patch conv + all layers (hidden states of every layer are read)."""
    patches = (cfg.image_size // cfg.patch_size) ** 2
    tokens = patches + 1  # + CLS
    f = 2 * patches * (cfg.num_channels * cfg.patch_size**2) * cfg.hidden_size
    f += cfg.num_hidden_layers * encoder_layer_flops(tokens, cfg.hidden_size, cfg.intermediate_size)
    return frames * f


def hubert_flops(cfg, clips: int, samples: int) -> tuple[int, int]:
    """HuBERT / wav2vec2 on `clips` raw clips of `samples` each: conv front-end, feature
    projection, convolutional position embedding, transformer. Returns (FLOPs, frames per clip)."""
    f, length, c_in = 0, samples, 1
    for c_out, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride):
        length = (length - k) // s + 1
        f += 2 * length * k * c_in * c_out
        c_in = c_out
    D = cfg.hidden_size
    f += 2 * length * c_in * D  # feature projection
    f += 2 * length * cfg.num_conv_pos_embeddings * D * (D // cfg.num_conv_pos_embedding_groups)
    f += cfg.num_hidden_layers * encoder_layer_flops(length, D, cfg.intermediate_size)
    return clips * f, length


def whisper_flops(cfg, positions: int) -> int:
    """Whisper encoder on the first `positions` positions (nanoemox encodes only the clips)."""
    D = cfg.d_model
    f = 2 * (2 * positions) * 3 * cfg.num_mel_bins * D + 2 * positions * 3 * D * D  # conv1 (stride 1), conv2 (stride 2)
    return f + cfg.encoder_layers * encoder_layer_flops(positions, D, cfg.encoder_ffn_dim)


def swin_flops(cfg, frames: int) -> int:
    """Swin: patch embedding, windowed attention blocks per stage, patch merging between stages."""
    res = cfg.image_size // cfg.patch_size
    C = cfg.embed_dim
    f = 2 * res * res * cfg.num_channels * cfg.patch_size**2 * C
    for i, depth in enumerate(cfg.depths):
        n = res * res
        window = min(cfg.window_size, res) ** 2
        ffn = int(cfg.mlp_ratio * C)
        f += depth * (2 * n * (4 * C * C + 2 * C * ffn) + 4 * n * window * C)
        if i < len(cfg.depths) - 1:  # patch merging: 2x2 neighbours concatenated, linear 4C -> 2C
            res //= 2
            f += 2 * res * res * 4 * C * 2 * C
            C *= 2
    return frames * f


def counted_flops(module, *inputs_shape: tuple[int, ...]) -> int:
    """Matmul/conv FLOPs of one forward, counted by torch from shapes (for CNNs such as the FER
    net, which has no closed form worth writing); runs on the meta device when the module is there."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    p = next(module.parameters())
    xs = [torch.zeros(s, dtype=p.dtype, device=p.device) for s in inputs_shape]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(*xs)
    return int(fc.get_total_flops())


def llm_shape(cfg) -> dict[str, int]:
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "ffn": cfg.intermediate_size, "heads": heads,
            "kv_heads": getattr(cfg, "num_key_value_heads", None) or heads, "head_dim": head_dim, "vocab": cfg.vocab_size}


def llm_flops(s: dict[str, int], new_tokens: int, context: int, lora_r: int = 0, lora_targets: int = 7) -> int:
    """`new_tokens` positions through a Llama/Qwen-style decoder attending to `context` positions
    (prefill: new_tokens = context; one decode step: new_tokens = 1), LM head at the last position."""
    D, q, kv, F = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"], s["ffn"]
    per_tok = D * q + 2 * D * kv + q * D + 3 * D * F  # q, k, v, o, gate/up/down
    if lora_r:
        dims = [(D, q), (D, kv), (D, kv), (q, D), (D, F), (D, F), (F, D)][:lora_targets]
        per_tok += sum(lora_r * (a + b) for a, b in dims)
    attn = 4 * new_tokens * context * q
    return s["layers"] * (2 * new_tokens * per_tok + attn) + 2 * D * s["vocab"]


def kv_bytes_per_token(s: dict[str, int], nbytes: int) -> int:
    return 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * nbytes


# ---------------------------------------------------------------- the whole model
def _params(model) -> dict[str, int]:
    groups = {g: sum(p.numel() for _, p in ps) for g, ps in model.parameter_groups().items()}
    out = {
        "vision_encoder": groups["vision_encoder"],
        "audio_encoder": groups["audio_encoder"],
        "face_backbone": groups["face_backbone"],
        "adapters_fusion": groups["visual_adapter"] + groups["audio_adapter"] + groups["face_adapter"] + groups["fusion"],
        "lora": groups["lora"],
        "language_model": groups["language_model"],
    }
    out["total"] = sum(out.values())
    out["trainable_phase3"] = sum(groups[g] for g in model.config.phases.get("3", []))
    return out


def _encoder_flops(model) -> tuple[dict[str, int], list[str]]:
    c = model.config
    notes: list[str] = []
    T, K = c.vision.num_frames, c.audio.num_clips
    v = vit_flops(model.vision_encoder.tower.config, T)
    acfg = model.audio_encoder.encoder.config
    if c.audio.encoder_type == "whisper":
        positions = int(round(c.audio.clip_seconds * 50)) * K
        a = whisper_flops(acfg, positions)
        notes.append(f"audio: Whisper encoder over {positions} positions ({K} clips x {c.audio.clip_seconds:g} s, one window)")
        a_len = positions // K
    else:
        a, a_len = hubert_flops(acfg, K, int(c.audio.clip_seconds * c.audio.sample_rate))
        notes.append(f"audio: {c.audio.encoder_type} on {K} clips x {c.audio.clip_seconds:g} s at {c.audio.sample_rate} Hz ({a_len} frames per clip)")
    fb = model.face_backbone
    if c.face.backbone_type == "swin":
        fc = swin_flops(fb.net.config, T)
    else:
        fc = counted_flops(fb, (1, T, fb.in_channels, c.face.input_size, c.face.input_size))
        notes.append(f"face: {c.face.backbone_type} backbone FLOPs counted by torch's FlopCounterMode from shapes")
    vc = model.vision_encoder.tower.config
    notes.append(f"vision: {T} frames x {(vc.image_size // vc.patch_size) ** 2 + 1} tokens; face backbone on {T} crops at {c.face.input_size}px")
    return {"vision_encoder": v, "audio_encoder": a, "face_backbone": fc}, notes


def _adapter_flops(model) -> int:
    c, ad, fu, tk = model.config, model.config.adapters, model.config.fusion, model.config.tokens
    D = model.language_model.config.hidden_size
    T, K = c.vision.num_frames, c.audio.num_clips
    Dv, Da, Df = model.vision_encoder.hidden_size, model.audio_encoder.hidden_size, model.face_backbone.feature_dim
    H = ad.qformer_hidden

    def qformer(d_in: int, length: int, queries: int) -> int:
        f = 2 * length * d_in * H + ad.qformer_layers * cross_block_flops(queries, length, H, ad.qformer_ffn, True)
        return f + 2 * queries * H * D

    f = qformer(Dv, T, tk.frame) + qformer(Da, K, tk.audio)
    Hf = ad.face_hidden  # face adapter: projection, temporal cross-attention, 2-layer MLP
    f += 2 * T * Df * Hf + ad.face_layers * cross_block_flops(tk.face, T, Hf, 4 * Hf, False) + 2 * tk.face * (Hf * D + D * D)
    E, Hx = c.num_experts, fu.hidden  # fusion experts, gate, output projection
    f += E * (2 * K * Da * Hx + 2 * T * Dv * Hx + cross_block_flops(K, T, Hx, fu.ffn, False))
    f += 2 * (E * Hx * fu.gate_hidden + fu.gate_hidden * E) + 2 * Hx * D * tk.multi
    return f


def model_cost(model, include_peer: bool | None = None) -> dict[str, Any]:
    """Parameters, bytes, FLOPs per sample and KV-cache size of a built model (meta device is fine).
    `include_peer` (default: paper preset only) adds the AffectGPT-sized peer under 'peer'."""
    c = model.config
    params = _params(model)
    enc, notes = _encoder_flops(model)
    adapters = _adapter_flops(model)
    s = llm_shape(model.language_model.config)
    r, targets = c.lora.r, len(c.lora.target_modules)
    modality = c.tokens.audio + c.tokens.frame + c.tokens.face + c.tokens.multi
    typical = modality + TYPICAL_TEXT_TOKENS
    longest = c.text.max_length
    prefill = {str(L): llm_flops(s, L, L, r, targets) for L in (typical, longest)}
    decode = {str(L): llm_flops(s, 1, L, r, targets) for L in (typical, longest)}
    enc_total = sum(enc.values())
    cost: dict[str, Any] = {
        "preset": c.preset,
        "params": params,
        "bytes": {k: params["total"] * n for k, n in BYTES.items()},
        "tokens": {"modality": modality, "typical_prompt": typical, "max_length": longest},
        "llm": s,
        "flops": {
            **enc,
            "encoders_total": enc_total,
            "adapters_fusion": adapters,
            "llm_prefill": prefill,
            "llm_decode_per_token": decode,
            # encoders + adapters + prefill of the typical prompt: one sample up to its first new token
            "per_sample": enc_total + adapters + prefill[str(typical)],
            # phase 3 with cached encoder features: adapters forward + backward (x3); the frozen LLM
            # runs forward + the activation half of backward (x2; LoRA weight grads are small)
            "train_step_per_sample_phase3": 3 * adapters + 2 * prefill[str(typical)],
        },
        "kv_cache": {
            "bytes_per_token_bf16": kv_bytes_per_token(s, 2),
            "bytes_per_token_fp32": kv_bytes_per_token(s, 4),
            f"bytes_at_{longest}_tokens_bf16": kv_bytes_per_token(s, 2) * longest,
        },
        "assumptions": [
            "FLOPs = 2 x multiply-adds of matmuls and convolutions, forward pass, batch 1; attention over the full square",
            f"prompt: {modality} modality tokens + {TYPICAL_TEXT_TOKENS} text tokens = {typical} (typical MER prompt); also {longest} (max_length)",
            f"LLM: LoRA r={r} on {targets} projections counted unmerged; LM head at the last position only",
            *notes,
            "bytes: every parameter at fp32 / bf16 / int8 (weights only; no activations or optimizer state)",
            "KV cache: 2 x layers x kv_heads x head_dim x bytes per generated (or prompt) token",
        ],
    }
    if include_peer is None:
        include_peer = c.preset == "paper"
    if include_peer:
        cost["peer"] = peer_cost(c)
    return cost


def peer_config(config):
    """The AffectGPT-sized peer: this config with a Qwen2.5-7B-shaped LLM (everything else equal)."""
    return config.with_overrides({"text.model_config": dict(PEER_LLM), "text.source": "random", "text.path": None,
                                  "text.model_type": "qwen2", "text.tokenizer": "byte", "preset": "peer-8b"})


def peer_cost(config) -> dict[str, Any]:
    """model_cost of the peer, built on the meta device (shapes only, nothing allocated)."""
    import torch

    from .modeling_nanoemox import NanoEmoXForConditionalGeneration

    from .presets import PAPER_PATH_VARS, paper

    if any(getattr(config, part).source != "random" for part in ("vision", "audio", "face")):
        config = paper({part: "" for part in PAPER_PATH_VARS})  # the paper shapes, never weights
    pc = peer_config(config)
    with torch.device("meta"):
        peer = NanoEmoXForConditionalGeneration(pc)
    cost = model_cost(peer, include_peer=False)
    cost["name"] = PEER_NAME
    return cost


# ---------------------------------------------------------------- printing
def fmt_count(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def fmt_bytes(n: float) -> str:
    for div, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.2f} {suffix}"
    return f"{n:.0f} B"


def cost_rows(cost: dict[str, Any]) -> list[tuple[str, str, float, str]]:
    """(section, quantity, raw value, formatted value) rows, shared by print_cost and the
    benchmark table that puts nanoemox next to the peer."""
    p, f, kv, t = cost["params"], cost["flops"], cost["kv_cache"], cost["tokens"]
    rows: list[tuple[str, str, float, str]] = []
    for k in (*PARTS, "total", "trainable_phase3"):
        rows.append(("parameters", k, p[k], fmt_count(p[k])))
    for k, v in cost["bytes"].items():
        rows.append(("weights", f"bytes at {k}", v, fmt_bytes(v)))
    for k in ("vision_encoder", "audio_encoder", "face_backbone", "encoders_total", "adapters_fusion"):
        rows.append(("FLOPs / sample", k, f[k], fmt_count(f[k], "FLOP")))
    for L, v in f["llm_prefill"].items():
        rows.append(("FLOPs / sample", f"LLM prefill, {L} tokens", v, fmt_count(v, "FLOP")))
    for L, v in f["llm_decode_per_token"].items():
        rows.append(("FLOPs / token", f"LLM decode at {L} context", v, fmt_count(v, "FLOP")))
    rows.append(("FLOPs / sample", f"per sample (encoders+adapters+prefill {t['typical_prompt']})", f["per_sample"], fmt_count(f["per_sample"], "FLOP")))
    rows.append(("FLOPs / sample", "phase-3 train step (cached encoders)", f["train_step_per_sample_phase3"], fmt_count(f["train_step_per_sample_phase3"], "FLOP")))
    for k, v in kv.items():
        rows.append(("KV cache", k.replace("_", " "), v, fmt_bytes(v)))
    return rows


def print_cost(cost: dict[str, Any], console) -> None:
    from rich.table import Table

    peer = cost.get("peer")
    table = Table(title=f"nanoemox cost on paper: preset {cost['preset']}")
    for col in ("section", "quantity", "nanoemox"):
        table.add_column(col, justify="right" if col == "nanoemox" else "left")
    if peer:
        table.add_column("8.3B peer", justify="right")
        table.add_column("peer / nanoemox", justify="right")
    peer_rows = {(s, q): (v, txt) for s, q, v, txt in cost_rows(peer)} if peer else {}
    for section, q, v, txt in cost_rows(cost):
        cells = [section, q, txt]
        if peer:
            pv, ptxt = peer_rows.get((section, q), (None, "-"))
            cells += [ptxt, f"{pv / v:.2f}x" if pv is not None and v else "-"]
        table.add_row(*cells)
    console.print(table)
    console.print("assumptions:")
    for a in cost["assumptions"]:
        console.print(f"  - {a}")
    if peer:
        console.print(f"  - peer: {peer['name']}: LLM {peer['llm']['layers']} layers x {peer['llm']['hidden']} wide, "
                      f"{peer['llm']['kv_heads']} KV heads; same encoders, adapters, LoRA rank and token counts")
