"""Generation: what `analyze --task mer` spends in generate vs the bare language model; KV cache on
vs off; `analyze --task all` with the six prompts in one batched generate vs one at a time; the
weight-only int8 language model vs fp32 (speed, and answer agreement on SynthAffect)."""
from __future__ import annotations

import statistics

import torch

from .common import Context, Table, interleave, ratios, spread, target

TITLE = "generation: analyze vs the bare LM; KV cache; batched analyze --task all; int8 vs fp32"


def run(ctx: Context) -> list[Table]:
    from nanoemox.inference.analyzer import DEFAULT_MAX_NEW_TOKENS, Analyzer, Row
    from nanoemox.inference.generation import RowControl
    from nanoemox.modeling.modeling_nanoemox import EncoderOutputs

    from .media import _fresh_threads

    analyzer = Analyzer.from_preset(ctx.preset, device="cpu")
    model, tok = analyzer.model, analyzer.tokenizer
    clip = ctx.corpus()["samples"][0]
    threads = _fresh_threads()  # generating the corpus left this process at one thread; `analyze` runs with the defaults
    media = analyzer.load_media(clip.media_path())
    (encoded,) = analyzer.encode([media])
    row = Row(encoded, "mer", clip.transcript)
    budget = DEFAULT_MAX_NEW_TOKENS["mer"]
    n_new = max(analyzer.generate_batch([row], [RowControl(budget)])[0].n_tokens, 1)
    prompt_ids, _ = analyzer.processor.tokenize("mer", encoded.modalities, clip.transcript)
    L = len(prompt_ids)
    lm_ids = torch.randint(0, model.base_vocab_size, (1, L), generator=torch.Generator().manual_seed(0))
    fixed = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)

    def bare_lm() -> None:
        model.language_model.generate(input_ids=lm_ids, attention_mask=torch.ones_like(lm_ids), max_new_tokens=n_new, min_new_tokens=n_new, **fixed)

    ids = torch.tensor([prompt_ids])
    enc = EncoderOutputs(**{k: v.unsqueeze(0) for k, v in encoded.tensors.items()})

    def full(use_cache: bool) -> None:  # the multimodal generate, forced to `budget` tokens
        model.generate(ids, torch.ones_like(ids), encoder_outputs=enc, max_new_tokens=budget, min_new_tokens=budget, use_cache=use_cache)

    def one_by_one() -> None:  # the six tasks, each its own analyze call (its own encoder pass, batch 1)
        for task in DEFAULT_MAX_NEW_TOKENS:
            analyzer.analyze(media, transcript=clip.transcript, tasks=task)

    def shared_encode() -> None:  # one encoder pass, then the six prompts one generate each
        (e,) = analyzer.encode([media])
        for task in DEFAULT_MAX_NEW_TOKENS:
            analyzer.generate([Row(e, task, clip.transcript)])

    six = [Row(encoded, task, clip.transcript) for task in DEFAULT_MAX_NEW_TOKENS]

    def steps(rows, n: int):  # n tokens forced (untrained weights never stop early): prefill + n - 1 decode steps
        return lambda: analyzer.generate_batch(rows, [RowControl(n) for _ in rows])

    quant = Analyzer.from_preset(ctx.preset, device="cpu", quantize="int8")
    with torch.no_grad():
        times = interleave({
            "analyze": lambda: analyzer.generate([row], budget),
            "bare": bare_lm,
            "cache_on": lambda: full(True),
            "cache_off": lambda: full(False),
            "all_batched": lambda: analyzer.analyze(media, transcript=clip.transcript, tasks="all"),
            "all_one_by_one": one_by_one,
            "all_shared_encode": shared_encode,
            "b6_17": steps(six, 17), "b6_1": steps(six, 1), "b1_17": steps(six[-1:], 17), "b1_1": steps(six[-1:], 1),
            "b2_17": steps(six[-2:], 17), "b2_1": steps(six[-2:], 1),
            "fp32": lambda: analyzer.generate([row], budget),
            "int8": lambda: quant.generate([row], budget),
        }, ctx.repeats)
    agree = _agreement(analyzer, quant, ctx)
    over = ratios(times["analyze"], times["bare"])
    kv = ratios(times["cache_off"], times["cache_on"])
    batched = ratios(times["all_one_by_one"], times["all_batched"])
    batched_gen = ratios(times["all_shared_encode"], times["all_batched"])
    q8 = ratios(times["fp32"], times["int8"])
    step6 = [a - b for a, b in zip(times["b6_17"], times["b6_1"])]
    step1 = [a - b for a, b in zip(times["b1_17"], times["b1_1"])]
    step = ratios(step6, step1)
    step2 = ratios([a - b for a, b in zip(times["b2_17"], times["b2_1"])], step1)
    # finished rows leave the batch: 32 steps at 6 rows, 8 at 4, 8 at 3, 112 at 2 (eri, erg), 64 at 1; rows 3-4
    # are costed as 6 (an upper bound), so this bound is slightly low
    c6, c2 = statistics.median(step), statistics.median(step2)
    bound = 536 / (48 * c6 + 112 * c2 + 64) if c6 > 0 and c2 > 0 else 0.0
    t = Table(TITLE, ["case", "ratio, median [min..max]", "target"])
    t.rows.append([f"analyze mer generate / bare LM generate ({n_new} new tokens, prompt {L})", spread(over, unit="x"), target(statistics.median(over), 1.2, "<=")])
    t.rows.append([f"KV cache off / on (multimodal generate, {budget} tokens forced)", spread(kv, unit="x"), "-"])
    t.rows.append(["analyze --task all: six single-task analyze calls / one batched call", spread(batched, unit="x"), target(statistics.median(batched), 2, ">=")])
    t.rows.append(["analyze --task all: one encode + six single-row generates / one batched call", spread(batched_gen, unit="x"), "-"])
    t.rows.append(["one decode step: the six task prompts together / the erg prompt alone (16 steps)", spread(step, unit="x"),
                   "-"])
    t.rows.append(["one decode step: the eri and erg prompts together / the erg prompt alone (16 steps)", spread(step2, unit="x"),
                   f"decode-only bound 536 / (48 x c6 + 112 x c2 + 64) = {bound:.2f}x" if bound else "-"])
    t.rows.append([f"generate mer ({budget} tokens), fp32 / int8 (speed-up)", spread(q8, unit="x"), target(statistics.median(q8), 1.5, ">=")])
    t.rows.append([f"int8 answers identical to fp32 ({agree['rows']} greedy answers, {agree['clips']} SynthAffect clips x 6 tasks)",
                   f"{agree['exact']:.1%} exact; first token {agree['first']:.1%}; identical leading tokens {agree['prefix']:.1%}", "-"])
    t.notes.append(f"{ctx.preset} preset, untrained weights (seed 0), CPU, greedy; {ctx.repeats} interleaved repetitions after a warm-up. "
                   "The analyze side of row 1 is Analyzer.generate (prompt tokens, collate, adapters, fusion, splice, decode, "
                   "detokenise) on cached encoder outputs; the bare LM decodes the same number of tokens from a random prompt of "
                   "the same length (min_new_tokens = max_new_tokens)")
    t.notes.append("analyze --task all: the clip is decoded once beforehand (decoding is not generation); each task keeps its "
                   f"default budget ({', '.join(f'{k} {v}' for k, v in DEFAULT_MAX_NEW_TOKENS.items())} tokens), untrained weights "
                   "never stop early, so one by one decodes 536 steps at batch 1; the batched call decodes 224 steps, and rows leave "
                   "the batch as their budgets run out (32 steps at 6 rows, 8 at 4, 8 at 3, 112 at 2, 64 at 1). "
                   "A decode step's cost: (time for 17 forced tokens - time for 1) / 16, both sides on the same prompts "
                   f"(batch 6: {statistics.median(step6) / 16 * 1000:.0f} ms a step, median)")
    t.notes.append(f"thread pools as in a fresh process ({threads}), as `nanoemox analyze` and `serve` run (generating the "
                   "clips limits this process to one thread; earlier runs of this table timed everything at one thread)")
    t.notes.append("int8: weight-only int8 of every nn.Linear of the language model (per-output-channel int8 weights, "
                   "activations not quantised, bf16 into the int8 kernel; encoders, adapters, embeddings fp32). Agreement: every SynthAffect clip of the "
                   "run x the six tasks, 32-token budget, greedy, fp32 vs int8 answers compared token by token; on untrained "
                   "weights the logits are nearly flat, so this is a harsh test (a trained model's margins are wider)")
    return [t]


def _agreement(fp32, int8, ctx: Context) -> dict[str, float]:
    """Greedy answers of both analyzers on every corpus clip x task (the six tasks of a clip in one
    generate), compared by their token ids."""
    from nanoemox.data.schema import TASKS
    from nanoemox.inference.analyzer import Row
    from nanoemox.inference.generation import RowControl

    samples = ctx.corpus()["samples"]
    medias = [fp32.load_media(s.media_path()) for s in samples]
    tokens = {}
    for name, an in (("fp32", fp32), ("int8", int8)):
        outs = []
        for media, s in zip(medias, samples):
            (e,) = an.encode([media])
            outs += an.generate_batch([Row(e, t, s.transcript) for t in TASKS], [RowControl(32) for _ in TASKS])
        tokens[name] = [o.tokens for o in outs]
    exact = first = prefix = 0.0
    for a, b in zip(tokens["fp32"], tokens["int8"]):
        exact += a == b
        first += bool(a and b and a[0] == b[0])
        common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefix += common / max(len(a), len(b), 1)
    n = len(tokens["fp32"])
    return {"rows": n, "clips": len(samples), "exact": exact / n, "first": first / n, "prefix": prefix / n}


def _demo_answers(an, samples) -> tuple[list, float]:
    """Every sample's own tasks in one generate per clip, default budgets, greedy; generate time only."""
    import time

    from nanoemox.inference.analyzer import DEFAULT_MAX_NEW_TOKENS, Row
    from nanoemox.inference.generation import RowControl

    out, spent = [], 0.0
    for i, s in enumerate(samples):
        media = an.load_media(s.media_path()) if s.media_path() else None
        (e,) = an.encode([media])
        tasks = s.tasks()
        rows = [Row(e, t, s.transcript, s.history, (s.candidates or {}).get(t)) for t in tasks]
        if i == 0:  # warm-up, untimed: the first generate of a process pays one-off set-up costs
            an.generate_batch(rows, [RowControl(2) for _ in tasks])
        t0 = time.perf_counter()
        res = an.generate_batch(rows, [RowControl(DEFAULT_MAX_NEW_TOKENS[t]) for t in tasks])
        spent += time.perf_counter() - t0
        out += [(t, r) for t, r in zip(tasks, res)]
    return out, spent


def _compare(a: list, b: list) -> dict:
    """Answer agreement of two runs over the same rows: whole text, parsed fields, per task text and label(s)."""
    from nanoemox.inference.parsing import parse_answer

    per_task: dict[str, list[int]] = {}  # task -> [same text, same parsed label(s), answers]
    same_fields = 0
    for x, y in zip(a, b):
        px, py = parse_answer(x[0], x[1].text), parse_answer(y[0], y[1].text)
        same_fields += px.to_dict() == py.to_dict()
        counts = per_task.setdefault(x[0], [0, 0, 0])
        counts[0] += x[1].text == y[1].text
        counts[1] += px.labels == py.labels
        counts[2] += 1
    n = len(a)
    return {"identical_text": sum(c[0] for c in per_task.values()) / n, "identical_parsed": same_fields / n,
            "identical_text_per_task": {t: f"{k}/{m}" for t, (k, _, m) in per_task.items()},
            "identical_label_per_task": {t: f"{k}/{m}" for t, (_, k, m) in per_task.items()}}


def demo_agreement(model_dir: str, manifest: str, limit: int | None = None) -> dict:
    """A trained model's greedy answers with its language model in fp32 vs int8 on a test split:
    every sample's own tasks, default budgets, as `predict` asks them; plus the generate time of
    each. A third arm, fp32 with the LoRA merged into the base weights (as int8 does before
    quantising), separates what merging alone changes and saves from what int8 does."""
    from nanoemox.data.schema import read_manifest
    from nanoemox.inference.analyzer import Analyzer
    from nanoemox.inference.quantization import merge_lora

    samples = read_manifest(manifest)[:limit]
    runs = {}
    for name in ("fp32", "fp32_merged", "int8"):
        an = Analyzer.from_pretrained(model_dir, device="cpu", quantize="int8" if name == "int8" else None)
        if name == "fp32_merged":
            merge_lora(an.model.language_model)
        runs[name] = _demo_answers(an, samples)
    (a, ta), (m, tm), (b, tb) = runs["fp32"], runs["fp32_merged"], runs["int8"]
    tokens = {k: sum(r.n_tokens for _, r in v[0]) for k, v in runs.items()}
    return {"answers": len(a), "samples": len(samples), **_compare(a, b),
            "tokens": tokens, "generate_s": {k: round(v[1], 2) for k, v in runs.items()},
            "speedup": round(ta / tb, 2), "speedup_per_token": round((ta / tokens["fp32"]) / (tb / tokens["int8"]), 2),
            "fp32_merged_vs_fp32": _compare(a, m),
            "int8_vs_fp32_merged": {**_compare(m, b), "speedup": round(tm / tb, 2),
                                    "speedup_per_token": round((tm / tokens["fp32_merged"]) / (tb / tokens["int8"]), 2)}}


if __name__ == "__main__":  # python -m benchmarks.generation MODEL_DIR TEST_MANIFEST [LIMIT]
    import json
    import sys

    print(json.dumps(demo_agreement(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None), indent=1))
