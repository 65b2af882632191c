"""Generation: what `analyze --task mer` spends in generate (prompt, adapters, fusion, splicing,
decoding, detokenising) vs the bare language model generating the same number of tokens from a
prompt of the same length; and decoding with the KV cache on vs off."""
from __future__ import annotations

import statistics

import torch

from .common import Context, Table, interleave, ratios, spread, target

TITLE = "generation: analyze --task mer vs the bare language model; KV cache on vs off"


class TokenCounter:
    """A generate() streamer that only counts the new tokens (batch 1)."""

    def __init__(self) -> None:
        self.n = -1  # generate first puts the prompt (empty with inputs_embeds), then one id per step

    def put(self, value) -> None:
        self.n += 1

    def end(self) -> None:
        pass


def run(ctx: Context) -> list[Table]:
    from nanoemox.inference.analyzer import DEFAULT_MAX_NEW_TOKENS, Analyzer, Row

    analyzer = Analyzer.from_preset(ctx.preset, device="cpu")
    model, tok = analyzer.model, analyzer.tokenizer
    clip = ctx.corpus()["samples"][0]
    (encoded,) = analyzer.encode([analyzer.load_media(clip.media_path())])
    row = Row(encoded, "mer", clip.transcript)
    budget = DEFAULT_MAX_NEW_TOKENS["mer"]
    counter = TokenCounter()
    analyzer.generate([row], budget, streamer=counter)  # how many tokens the answer takes
    n_new = max(counter.n, 1)
    prompt_ids, _ = analyzer.processor.tokenize("mer", encoded.modalities, clip.transcript)
    L = len(prompt_ids)
    gen = torch.Generator().manual_seed(0)
    lm_ids = torch.randint(0, model.base_vocab_size, (1, L), generator=gen)
    fixed = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)

    def bare_lm(use_cache: bool = True, n: int = n_new) -> None:
        model.language_model.generate(input_ids=lm_ids, attention_mask=torch.ones_like(lm_ids), max_new_tokens=n,
                                      min_new_tokens=n, use_cache=use_cache, **fixed)

    ids = torch.tensor([prompt_ids])
    from nanoemox.modeling.modeling_nanoemox import EncoderOutputs

    enc = EncoderOutputs(**{k: v.unsqueeze(0) for k, v in encoded.tensors.items()})

    def full(use_cache: bool) -> None:  # the multimodal generate, forced to `budget` tokens
        model.generate(ids, torch.ones_like(ids), encoder_outputs=enc, max_new_tokens=budget, min_new_tokens=budget, use_cache=use_cache)

    with torch.no_grad():
        times = interleave({
            "analyze": lambda: analyzer.generate([row], budget),
            "bare": bare_lm,
            "cache_on": lambda: full(True),
            "cache_off": lambda: full(False),
        }, ctx.repeats)
    over = ratios(times["analyze"], times["bare"])
    kv = ratios(times["cache_off"], times["cache_on"])
    t = Table(TITLE, ["case", "ratio, median [min..max]", "target"])
    t.rows.append([f"analyze mer generate / bare LM generate ({n_new} new tokens, prompt {L})", spread(over, unit="x"), target(statistics.median(over), 1.2, "<=")])
    t.rows.append([f"KV cache off / on (multimodal generate, {budget} tokens forced)", spread(kv, unit="x"), "-"])
    t.notes.append(f"{ctx.preset} preset, untrained weights (seed 0), CPU, batch 1, greedy; {ctx.repeats} interleaved repetitions "
                   "after a warm-up. The analyze side is Analyzer.generate (prompt tokens, collate, adapters, fusion, splice, "
                   "decode, detokenise) on cached encoder outputs; the bare LM decodes the same number of tokens from a random "
                   "prompt of the same length (min_new_tokens = max_new_tokens)")
    return [t]
