"""Repetition guards for free-text answers, per task (the decoding defaults of every caller:
`generation.decode` applies them per row; `RepetitionGuard` is the same rule as a transformers
logits processor for callers of `generate`).

A small model that has not learnt a task well can fall into a loop ("the event about the event
about ...") and decode until its token budget. The guard forbids any token that would repeat an
n-gram already present in that row's own answer (the prompt is not counted: an answer may quote
the transcript). n is per task and chosen so the guard never touches a correct answer: every
SynthAffect target's longest repeated token n-gram is shorter than n (checked by
tests/test_demo.py on a fresh corpus). Rows of one batch may belong to different tasks, so the
n-gram size is per row.
"""
from __future__ import annotations

from typing import Sequence

import torch

# Token n-gram size per task; 0 = no guard. Labels are a few tokens (a guard could only hurt a
# multi-word label list); rationales and replies are long, and name the same topic phrase up to
# three times (event, cause, reply), so their n sits above the longest repeat in any target.
# Measured with SmolLM2's tokenizer: the longest repeat is 8 tokens in any ERG target (all 2016
# emotion x event x intent combinations; a topic phrase named three times), 2 in ERI reasons, 1 in
# OV label lists.
NO_REPEAT_NGRAM = {"mer": 0, "msa": 0, "mir": 0, "ovmer": 3, "eri": 8, "erg": 12}


def ngram_sizes(tasks: Sequence[str]) -> list[int]:
    return [NO_REPEAT_NGRAM.get(t, 0) for t in tasks]


class RepetitionGuard:
    """A transformers logits processor: row b may not emit a token that completes an n_b-gram
    already in its generated tokens. `start`: where the generated tokens begin in `input_ids`
    (0 when generation starts from `inputs_embeds`, as NanoEmoX's generate does)."""

    def __init__(self, sizes: Sequence[int], start: int = 0) -> None:
        self.sizes = [int(n) for n in sizes]
        self.start = start

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        gen = input_ids[:, self.start:].tolist()
        for b, n in enumerate(self.sizes):
            if n <= 1 or b >= len(gen) or len(gen[b]) < n - 1:
                continue
            banned = banned_tokens(gen[b], n)
            if banned:
                scores[b, list(banned)] = float("-inf")
        return scores


def banned_tokens(tokens: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already in `tokens` (given its last n-1 tokens)."""
    prefix = tuple(tokens[len(tokens) - (n - 1):])
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i:i + n - 1]) == prefix}


def longest_repeat(tokens: Sequence[int]) -> int:
    """Length of the longest n-gram that occurs at least twice in `tokens` (0 if none)."""
    best = 0
    for n in range(1, len(tokens)):
        seen: set[tuple[int, ...]] = set()
        hit = False
        for i in range(len(tokens) - n + 1):
            g = tuple(tokens[i:i + n])
            if g in seen:
                hit = True
                break
            seen.add(g)
        if not hit:
            break
        best = n
    return best
