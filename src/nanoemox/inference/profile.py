"""Where one clip's latency goes: media preprocessing, encoders, generation, and how much the
multimodal generate costs over the bare language model producing the same number of tokens."""
from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch

from .analyzer import DEFAULT_MAX_NEW_TOKENS, Analyzer


def profile_analyze(analyzer: Analyzer, path: str | os.PathLike, task: str = "mer", repeats: int = 3,
                    max_new_tokens: int | None = None, transcript: str = "") -> dict[str, Any]:
    """Time `repeats` runs of one task on one clip (after one untimed warm-up run), stage by stage.

    preprocess_s: decode + face crops + encoder input tensors + prompt tokens; encode_s: the
    encoders; generate_s: adapters + fusion + splicing + decoding; lm_generate_s: the bare
    `language_model.generate` from a random prompt of the same length, forced to produce the
    same number of new tokens (min_new_tokens = max_new_tokens). Values are medians over repeats.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    model = analyzer.model
    budget = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task]
    runs: list[dict[str, float]] = []
    for i in range(repeats + 1):  # run 0 warms up caches and lazy initialisation
        t0 = time.perf_counter()
        media = analyzer.load_media(path)
        modalities = analyzer.processor.present_modalities(media)
        tensors = analyzer.processor.media_tensors(media, modalities)
        prompt_ids, _ = analyzer.processor.tokenize(task, modalities, transcript)
        t1 = time.perf_counter()
        with torch.no_grad():
            enc = model.encode(**{k: v.unsqueeze(0).to(analyzer.device) for k, v in tensors.items()})
        _sync(analyzer)
        t2 = time.perf_counter()
        n_new = _generate(analyzer, enc, modalities, prompt_ids, budget)
        _sync(analyzer)
        t3 = time.perf_counter()
        lm_s = _bare_lm(analyzer, len(prompt_ids), n_new, seed=i)
        if i == 0:
            continue
        runs.append({
            "preprocess_s": t1 - t0, "encode_s": t2 - t1, "generate_s": t3 - t2, "total_s": t3 - t0,
            "lm_generate_s": lm_s, "prompt_tokens": len(prompt_ids), "new_tokens": n_new,
        })
    med = {k: statistics.median(r[k] for r in runs) for k in ("preprocess_s", "encode_s", "generate_s", "total_s", "lm_generate_s")}
    overhead = med["generate_s"] - med["lm_generate_s"]
    return {
        "task": task,
        "path": str(path),
        "repeats": repeats,
        "device": str(analyzer.device),
        "modalities": sorted(modalities),
        "prompt_tokens": runs[-1]["prompt_tokens"],
        "new_tokens": runs[-1]["new_tokens"],
        **{k: round(v, 5) for k, v in med.items()},
        "generation_overhead_s": round(overhead, 5),
        "generation_overhead_ratio": round(med["generate_s"] / med["lm_generate_s"], 4) if med["lm_generate_s"] > 0 else None,
        "runs": [{k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


@torch.no_grad()
def _generate(analyzer: Analyzer, enc, modalities, prompt_ids: list[int], budget: int) -> int:
    """The multimodal generate as `Analyzer.generate` runs it; returns how many tokens it produced
    (up to and including the first end-of-turn token)."""
    from ..modeling.modeling_nanoemox import EncoderOutputs
    from ..modeling.processing import keep_encoded

    enc = EncoderOutputs(**keep_encoded(enc.to_dict(), modalities))
    ids = torch.tensor([prompt_ids], device=analyzer.device)
    out = analyzer.model.generate(ids, torch.ones_like(ids), encoder_outputs=enc, max_new_tokens=budget)
    row = out[0].tolist()
    tok = analyzer.tokenizer
    stops = {tok.eos_token_id, tok.pad_token_id}
    n = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
    return max(1, n)


@torch.no_grad()
def _bare_lm(analyzer: Analyzer, prompt_len: int, n_new: int, seed: int) -> float:
    lm = analyzer.model.language_model
    gen = torch.Generator().manual_seed(seed)
    vocab = analyzer.model.base_vocab_size  # ordinary tokens only (no placeholders)
    ids = torch.randint(0, vocab, (1, prompt_len), generator=gen).to(analyzer.device)
    tok = analyzer.tokenizer
    t = time.perf_counter()
    lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, min_new_tokens=n_new,
                do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    _sync(analyzer)
    return time.perf_counter() - t


def _sync(analyzer: Analyzer) -> None:
    if analyzer.device.type == "cuda":
        torch.cuda.synchronize(analyzer.device)
