"""Batched decoding: many rows in one decoding loop, each row with its own answer budget, cancel
flag and token stream.

A row that reaches its budget, sees its cancel flag or emits an end token leaves the batch (and
its KV cache rows) at once, so the rows still decoding run at the smaller batch size; each row's
text stream is fed token by token as it is decoded. Left padding and the attention mask keep a
row's greedy answer the same at any batch size (tested).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import torch

from .quantization import QUANTIZE_CHOICES, quantize_language_model  # noqa: F401  (moved there; re-exported)


@dataclass(frozen=True)
class Sampling:
    """How one request decodes. Greedy rows may share any batch. Sampled rows share a batch only
    with rows of the same temperature / top_p and no seed; a seeded sampled request decodes alone,
    so its seed gives the answer an unbatched call gives (one RNG serves a whole batch)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def group_key(self, owner: Hashable) -> tuple:
        if not self.do_sample:
            return ("greedy",)
        if self.seed is not None:
            return ("seeded", owner)
        return ("sample", float(self.temperature), float(self.top_p))


@dataclass
class RowControl:
    """One row's limits: its answer budget (tokens), an optional cancel flag (timeouts, gone
    clients) and an optional callback receiving its text as it is decoded."""

    budget: int
    cancel: threading.Event | None = None
    on_text: Callable[[str], None] | None = None


@dataclass
class RowOutput:
    text: str
    n_tokens: int
    finish: str  # stop (end token) | length (budget) | cancelled
    gate: list[float] | None = None
    tokens: list[int] = field(default_factory=list, repr=False)


class _RowState:
    def __init__(self, control: RowControl, tokenizer) -> None:
        self.control, self.tokenizer = control, tokenizer
        self.tokens: list[int] = []
        self.finish: str | None = None
        self.sent = ""

    def step(self, tok: int, eos: set[int]) -> bool:
        """Take the row's next token; True when the row is done (end token, budget, cancel)."""
        if tok in eos:
            self.finish = "stop"
            return True
        self.tokens.append(tok)
        self.emit()
        if len(self.tokens) >= self.control.budget:
            self.finish = "length"
        elif self.control.cancel is not None and self.control.cancel.is_set():
            self.finish = "cancelled"
        return self.finish is not None

    def output(self) -> RowOutput:
        self.emit(final=True)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).strip()
        return RowOutput(text, len(self.tokens), self.finish or "length", tokens=list(self.tokens))

    def emit(self, final: bool = False) -> None:
        if self.control.on_text is None:
            return
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        if text.startswith(self.sent) and len(text) > len(self.sent):
            delta, self.sent = text[len(self.sent):], text
            self.control.on_text(delta)


# ------------------------------------------------------------------------------------------------
# The decoding loop. transformers' `generate` keeps a finished row in the batch until every row is
# done (it pads it), so a batch of short labels and a long reply pays batch-size steps for the
# whole reply. This loop drops a finished row from the batch and its KV cache (as continuous-
# batching servers do), and otherwise follows `generate`'s greedy / multinomial sampling: the same
# logits processors (placeholder suppression, the per-row repetition guard, temperature, top-p),
# left padding with position ids from the attention mask, and only the last position's logits.
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def decode(lm, embeds: torch.Tensor, attention_mask: torch.Tensor, controls: Sequence[RowControl], sampling: Sampling,
           tokenizer, eos_ids: Sequence[int], *, suppress: Sequence[int] = (), ngram: Sequence[int] | None = None) -> list[RowOutput]:
    """Decode every row of a left-padded prompt batch (`embeds` (B, L, D), `attention_mask` (B, L))
    to its own budget, end token or cancel flag; returns one RowOutput per row, in order."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from .guards import banned_tokens

    rows = [_RowState(c, tokenizer) for c in controls]
    eos = {int(e) for e in eos_ids}
    sizes = [int(n) for n in (ngram or [0] * len(rows))]
    if all(c.cancel is not None and c.cancel.is_set() for c in controls):
        return [RowOutput("", 0, "cancelled") for _ in controls]
    if sampling.do_sample and sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    warpers = []
    if sampling.do_sample:
        warpers.append(TemperatureLogitsWarper(max(float(sampling.temperature), 1e-5)))
        if float(sampling.top_p) < 1.0:
            warpers.append(TopPLogitsWarper(float(sampling.top_p)))
    suppress_t = torch.tensor(sorted({int(s) for s in suppress}), dtype=torch.long, device=embeds.device)

    mask = attention_mask.long()  # (B, L)
    position = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # (B, L), left padding safe
    active = list(range(len(rows)))  # batch position -> row index
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1)
    cache, next_pos = out.cache, position[:, -1] + 1  # (B,)
    while True:
        scores = out.logits[:, -1].float()  # (b, V)
        if suppress_t.numel():
            scores[:, suppress_t] = float("-inf")
        for j, i in enumerate(active):
            n = sizes[i]
            if n > 1 and len(rows[i].tokens) >= n - 1:
                banned = banned_tokens(rows[i].tokens, n)
                if banned:
                    scores[j, list(banned)] = float("-inf")
        if warpers:
            for w in warpers:  # warpers read only the scores (input_ids unused)
                scores = w(None, scores)
            nxt = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            nxt = torch.argmax(scores, dim=-1)
        keep = [j for j, (i, tok) in enumerate(zip(active, nxt.tolist())) if not rows[i].step(int(tok), eos)]
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch and the cache
            idx = torch.tensor(keep, dtype=torch.long, device=mask.device)
            cache.batch_select_indices(idx)
            mask, next_pos, nxt = mask[idx], next_pos[idx], nxt[idx]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)  # (b, L + t)
        out = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None], cache=cache, use_cache=True)
        next_pos = next_pos + 1
    return [r.output() for r in rows]
