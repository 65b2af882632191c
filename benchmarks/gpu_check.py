"""GPU check at paper shape (random weights, nothing downloaded): prefill and decode tokens/s,
peak memory, and a phase-3 training step at batch 3 with cached encoder features vs recomputing
the frozen encoders. `--device cpu --tiny` is a smoke mode (tiny preset) for tests.

    python benchmarks/gpu_check.py                 # cuda, paper preset, bf16 (benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --device cpu --tiny
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: bool = True) -> list[float]:
    if warmup:
        fn()  # warm-up (kernels, allocator, lazy init)
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def build(preset: str, device: torch.device, dtype: torch.dtype):
    from nanoemox.modeling.modeling_nanoemox import NanoEmoXForConditionalGeneration
    from nanoemox.modeling.presets import get_preset

    torch.manual_seed(0)
    with torch.device(device):
        model = NanoEmoXForConditionalGeneration(get_preset(preset))
    return model.to(dtype)


def prompt_ids(model, batch: int, length: int, answer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper-shaped prompts without a tokenizer: text tokens around the placeholder runs, the last
    `answer` tokens scored as the answer."""
    from nanoemox.prompts import MODALITY_ORDER

    t = model.config.tokens
    counts = {"multi": t.multi, "audio": t.audio, "face": t.face, "frame": t.frame}
    run = [model.placeholder_ids[m] for m in MODALITY_ORDER for _ in range(counts[m])]
    head = 16
    tail = length - head - len(run)
    if tail <= answer:
        raise SystemExit(f"--prompt {length} is too short for {len(run)} modality tokens + an answer of {answer}")
    g = torch.Generator().manual_seed(0)
    text = lambda n: torch.randint(0, model.base_vocab_size, (batch, n), generator=g)  # noqa: E731
    ids = torch.cat([text(head), torch.tensor(run).expand(batch, -1), text(tail)], 1)
    labels = torch.full_like(ids, -100)
    labels[:, -answer:] = ids[:, -answer:]
    return ids, labels


def media(model, batch: int) -> dict[str, torch.Tensor]:
    c = model.config
    T, K, S, F = c.vision.num_frames, c.audio.num_clips, c.vision.image_size, c.face.input_size
    n = int(c.audio.clip_seconds * c.audio.sample_rate)
    audio = torch.randn(batch, 80, 3000) if c.audio.encoder_type == "whisper" else torch.randn(batch, K, n)
    return {
        "pixel_values": torch.randn(batch, T, 3, S, S), "frame_mask": torch.ones(batch, T, dtype=torch.bool),
        "audio_values": audio, "audio_mask": torch.ones(batch, K, dtype=torch.bool),
        "face_values": torch.randn(batch, T, model.face_backbone.in_channels, F, F), "face_mask": torch.ones(batch, T, dtype=torch.bool),
    }


def generation_latency(model, device: torch.device, dtype: torch.dtype, batches: list[int], prompt: int, new_tokens: int, repeats: int) -> dict:
    """The whole model answering from media (encoders, adapters, fusion, then greedy decoding of
    exactly `new_tokens` tokens) at each batch size: seconds per call and per new token."""
    out = {}
    tok = model.tokenizer
    for b in batches:
        ids, _ = prompt_ids(model, b, prompt, 8)
        ids = ids.to(device)
        med = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in media(model, b).items()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        kw = dict(media=med, max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=tok.eos_token_id)
        t = statistics.median(timed(lambda: model.generate(ids, attention_mask=torch.ones_like(ids), **kw), device, repeats))
        out[f"generate_b{b}_s"] = round(t, 4)
        out[f"generate_b{b}_ms_per_token"] = round(1000 * t / new_tokens, 2)
        out[f"peak_memory_generate_b{b}_bytes"] = peak_memory(device)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny preset (smoke test; default: paper shapes)")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp32"], help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--prompt", type=int, default=256, help="prompt tokens incl. the 69 modality tokens (default 256)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=3, help="training batch (paper: 3)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gen-batches", default="1,8", help="batch sizes for the full-model generation latency (default 1,8)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible (use --device cpu --tiny for the smoke mode)")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    preset = "tiny" if args.tiny else "paper"
    t0 = time.perf_counter()
    model = build(preset, device, dtype)
    build_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    lm = model.language_model
    tok = model.tokenizer
    ids, labels = prompt_ids(model, 1, args.prompt, 8)
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    N = args.new_tokens
    fixed = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                 min_new_tokens=N, max_new_tokens=N)
    text_ids = ids.clamp(max=model.base_vocab_size - 1)  # the bare LM sees ordinary tokens only

    with torch.no_grad():
        pre = timed(lambda: lm(input_ids=text_ids, attention_mask=mask, logits_to_keep=1), device, args.repeats)
        gen = timed(lambda: lm.generate(input_ids=text_ids, attention_mask=mask, **fixed), device, args.repeats)
    infer_peak = peak_memory(device)
    prefill_s, gen_s = statistics.median(pre), statistics.median(gen)
    decode_s = max(gen_s - prefill_s, 1e-9)

    # Phase-3 step at batch B: cached encoder features vs recomputing the frozen encoders.
    B = args.batch
    ids_b, labels_b = (t.to(device) for t in prompt_ids(model, B, args.prompt, 32))
    med = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in media(model, B).items()}
    model.set_phase("3")
    model.train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-6)
    with torch.no_grad():
        enc = model.encode(**med)

    def step(cached: bool) -> None:
        kw = {"encoder_outputs": enc} if cached else med
        out = model(input_ids=ids_b, attention_mask=torch.ones_like(ids_b), labels=labels_b, **kw)
        out.loss.float().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cached, recompute = [], []
    step(True), step(False)  # warm-up
    for r in range(args.repeats):  # interleaved, order flipped every repetition
        for c in ((True, False) if r % 2 == 0 else (False, True)):
            (cached if c else recompute).append(timed(lambda: step(c), device, 1, warmup=False)[0])
    train_peak = peak_memory(device)
    model.set_phase(None)
    model.eval()
    gen_latency = generation_latency(model, device, dtype, [int(b) for b in args.gen_batches.split(",") if b], args.prompt, N, args.repeats)
    res = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": preset, "dtype": str(dtype).replace("torch.", ""), "build_s": round(build_s, 2),
        "prompt_tokens": args.prompt, "new_tokens": N,
        "prefill_tokens_per_s": round(args.prompt / prefill_s, 1),
        "decode_tokens_per_s": round(N / decode_s, 1),
        "generate_s": round(gen_s, 4),
        "peak_memory_inference_bytes": infer_peak,
        "train_batch": B,
        "phase3_step_cached_s": round(statistics.median(cached), 4),
        "phase3_step_recompute_s": round(statistics.median(recompute), 4),
        "feature_cache_speedup": round(statistics.median(recompute) / statistics.median(cached), 2),
        "phase3_tokens_per_s_cached": round(B * args.prompt / statistics.median(cached), 1),
        "phase3_tokens_per_s_recompute": round(B * args.prompt / statistics.median(recompute), 1),
        "peak_memory_train_bytes": max(train_peak, peak_memory(device)),
        **gen_latency,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if k.endswith("_bytes"):
                v = f"{v / 2**30:.2f} GiB"
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
