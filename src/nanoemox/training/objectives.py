"""What a phase optimises.

- ``lm`` (default): next-token loss on the answer, through the whole model (the paper's objective).
- ``align``: representation alignment of the adapters before they meet the language model, in the
  spirit of BLIP-2's first stage. The placeholder embeddings a modality produces are regressed onto
  the frozen LLM's own input embeddings of the sample's answer words (its emotion, sentiment, intent
  or open-vocabulary labels), sub-word by sub-word in reading order: a label that is several tokens
  (" Ask| for| help", " Com|plain") is spelt out across the block's placeholders rather than
  averaged into one vector that is no word the LLM reads. It needs no LLM forward or backward, so on a CPU thousands of samples
  cost seconds, and the generative phases start from adapters whose outputs the LLM already reads
  as words instead of from random vectors it must first learn to decode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..modeling.modeling_nanoemox import EncoderOutputs, NanoEmoXForConditionalGeneration


@dataclass
class WordTargets:
    """Per sample, the input embeddings of its answer words' sub-word tokens in reading order
    (each word spelt with a leading space, as it appears mid-sentence): `seq` (B, L, D), padded;
    `lengths` (B,) the number of real rows."""

    seq: torch.Tensor
    lengths: torch.Tensor

    def to(self, device) -> "WordTargets":
        return WordTargets(self.seq.to(device), self.lengths.to(device))

    def per_token(self, n: int) -> torch.Tensor:
        """(B, n, D): placeholder j of a block is aligned to sub-word j mod length, so a block of
        n tokens spells the label in order ("Ask for help Ask ...") and a one-token label fills it."""
        j = torch.arange(n, device=self.seq.device)[None, :] % self.lengths[:, None].clamp(min=1)  # (B, n)
        return torch.gather(self.seq, 1, j[..., None].expand(-1, -1, self.seq.shape[-1]))


_SUBWORDS: dict[tuple[int, str], list[int]] = {}  # (tokenizer id, word) -> ids: words repeat every step


def _subword_ids(tok, word: str) -> list[int]:
    key = (id(tok), word)
    if key not in _SUBWORDS:
        _SUBWORDS[key] = list(tok(" " + word, add_special_tokens=False)["input_ids"])
    return _SUBWORDS[key]


def word_targets(model: NanoEmoXForConditionalGeneration, words: Sequence[Sequence[str]]) -> WordTargets:
    """The sub-word embedding sequence of each sample's answer words (see `WordTargets`)."""
    table = model.language_model.get_input_embeddings().weight.detach()
    ids = [[i for w in ws for i in _subword_ids(model.tokenizer, w)] for ws in words]
    L = max(1, max(len(x) for x in ids))
    seq = table.new_zeros((len(ids), L, table.shape[1]), dtype=torch.float32)
    for b, x in enumerate(ids):
        if x:
            seq[b, : len(x)] = table[x].float()
    return WordTargets(seq, torch.tensor([len(x) for x in ids]))


def alignment_loss(
    model: NanoEmoXForConditionalGeneration, enc: EncoderOutputs, modalities: Sequence[frozenset[str]], targets: WordTargets
) -> torch.Tensor | None:
    """Mean over (sample, modality) pairs of the squared error between the modality's placeholder
    embeddings and the sample's sub-word targets (`WordTargets.per_token`), relative to the
    targets' energy. Samples without answer words are left out. None when no sample in the batch
    has a modality this phase may use."""
    feats, _ = model.project(enc)  # {modality: (B, N, D)}
    has_words = targets.lengths > 0
    total, count = None, 0
    for m, f in feats.items():
        present = torch.tensor([m in mods for mods in modalities], device=f.device) & has_words.to(f.device)  # (B,)
        if not bool(present.any()):
            continue
        t = targets.per_token(f.shape[1])[present].to(f.dtype)  # (P, N, D)
        err = (f[present] - t).pow(2).mean(-1) / t.pow(2).mean(-1)  # (P, N)
        total = err.mean(-1).sum() if total is None else total + err.mean(-1).sum()
        count += int(present.sum())
    return None if total is None else total / count
