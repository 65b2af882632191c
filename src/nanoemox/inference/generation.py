"""Batched decoding: many rows in one `generate`, each row with its own answer budget, cancel flag
and token stream.

`generate` stops a batch only when every row is done, so a row's own limits are a stopping
criterion that answers per row: once a row reaches its budget, sees its cancel flag or emits an
end token, transformers pads it from then on while the others keep decoding. The same criterion
feeds each row's text stream token by token (it runs once per decoding step). Left padding and
the attention mask keep a row's greedy answer the same at any batch size (tested).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

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

    def generate_kwargs(self) -> dict[str, Any]:
        if self.do_sample:
            return dict(do_sample=True, temperature=max(float(self.temperature), 1e-5), top_p=float(self.top_p), top_k=None)
        return dict(do_sample=False, temperature=None, top_p=None, top_k=None)


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

    def emit(self, final: bool = False) -> None:
        if self.control.on_text is None:
            return
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        if text.startswith(self.sent) and len(text) > len(self.sent):
            delta, self.sent = text[len(self.sent):], text
            self.control.on_text(delta)


class RowStops:
    """A stopping criterion with a per-row answer (transformers ANDs it into its unfinished mask)."""

    def __init__(self, controls: Sequence[RowControl], tokenizer, eos_ids: Sequence[int]) -> None:
        self.rows = [_RowState(c, tokenizer) for c in controls]
        self.eos = set(int(e) for e in eos_ids)

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        done = []
        for row, tok in zip(self.rows, last):
            if row.finish is None:
                if int(tok) in self.eos:
                    row.finish = "stop"
                else:
                    row.tokens.append(int(tok))
                    row.emit()
                    if len(row.tokens) >= row.control.budget:
                        row.finish = "length"
                if row.finish is None and row.control.cancel is not None and row.control.cancel.is_set():
                    row.finish = "cancelled"
            done.append(row.finish is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def outputs(self) -> list[RowOutput]:
        out = []
        for row in self.rows:
            row.emit(final=True)
            text = row.tokenizer.decode(row.tokens, skip_special_tokens=True).strip()
            out.append(RowOutput(text, len(row.tokens), row.finish or "length", tokens=list(row.tokens)))
        return out


def run_rows(call: Callable[..., Any], controls: Sequence[RowControl], sampling: Sampling, tokenizer, eos_ids: Sequence[int]) -> tuple[list[RowOutput], Any]:
    """Decode one batch: `call(max_new_tokens=, stopping_criteria=, **sampling)` runs the model's
    generate; returns the per-row outputs and whatever else `call` returned (e.g. the gate)."""
    from transformers import StoppingCriteriaList

    stops = RowStops(controls, tokenizer, eos_ids)
    if all(c.cancel is not None and c.cancel.is_set() for c in controls):
        return [RowOutput("", 0, "cancelled") for _ in controls], None
    if sampling.do_sample and sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    extra = call(max_new_tokens=max(int(c.budget) for c in controls), stopping_criteria=StoppingCriteriaList([_Adapter(stops)]),
                 **sampling.generate_kwargs())
    return stops.outputs(), extra


def _Adapter(stops: RowStops):
    from transformers import StoppingCriteria

    class _Stops(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return stops(input_ids, scores)

    return _Stops()
