"""What a phase optimises.

- ``lm`` (default): next-token loss on the answer, through the whole model (the paper's objective).
- ``align``: representation alignment of the adapters before they meet the language model, in the
  spirit of BLIP-2's first stage. Every placeholder embedding a modality produces is regressed onto
  the frozen LLM's own input embedding of the sample's answer words (its emotion, sentiment, intent
  or open-vocabulary labels). It needs no LLM forward or backward, so on a CPU thousands of samples
  cost seconds, and the generative phases start from adapters whose outputs the LLM already reads
  as words instead of from random vectors it must first learn to decode.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..modeling.modeling_nanoemox import EncoderOutputs, NanoEmoXForConditionalGeneration


def word_targets(model: NanoEmoXForConditionalGeneration, words: Sequence[Sequence[str]]) -> torch.Tensor:
    """Per sample, the mean input embedding of its answer words (each word the mean of its tokens,
    spelt with a leading space as it appears mid-sentence): (B, D)."""
    table = model.language_model.get_input_embeddings().weight.detach()
    tok = model.tokenizer
    rows = []
    for ws in words:
        vecs = [table[tok(" " + w, add_special_tokens=False)["input_ids"]].mean(0) for w in ws]
        rows.append(torch.stack(vecs).mean(0))
    return torch.stack(rows).float()  # (B, D)


def alignment_loss(
    model: NanoEmoXForConditionalGeneration, enc: EncoderOutputs, modalities: Sequence[frozenset[str]], targets: torch.Tensor
) -> torch.Tensor | None:
    """Mean over (sample, modality) pairs of the squared error between each of the modality's
    placeholder embeddings and the sample's word target, relative to the target's energy.
    None when no sample in the batch has a modality this phase may use."""
    feats, _ = model.project(enc)  # {modality: (B, N, D)}
    total, count = None, 0
    for m, f in feats.items():
        present = torch.tensor([m in mods for mods in modalities], device=f.device)  # (B,)
        if not bool(present.any()):
            continue
        t = targets[present].to(f.dtype)  # (P, D)
        err = (f[present] - t[:, None, :]).pow(2).mean((-1, -2)) / t.pow(2).mean(-1)  # (P,)
        total = err.sum() if total is None else total + err.sum()
        count += int(present.sum())
    return None if total is None else total / count
