"""Feature cache: one phase-3 training step (adapters + fusion + LoRA, forward + backward +
AdamW) reading the frozen encoders' outputs from the on-disk FeatureCache, vs the same step
recomputing the frozen encoders from the media tensors."""
from __future__ import annotations

import statistics

import torch

from .common import Context, Table, interleave, ratios, spread, target

TITLE = "feature cache: phase-3 training step, cached encoder features vs recomputing the encoders"
BATCH = 3  # the paper's batch size


def build_batch(ctx: Context, model, processor, batch: int = BATCH, task: str = "mer"):
    """A collated batch of real clips with answers (media tensors, not encoded)."""
    from nanoemox.data.media import load_media

    samples = ctx.corpus()["samples"][:batch]
    mcfg = processor.media_config()
    exs = [processor.example(s, task, media=load_media(s.media_path(), mcfg)) for s in samples]
    return samples, exs, processor.collate(exs)


def run(ctx: Context) -> list[Table]:
    from nanoemox.data.features import FeatureCache
    from nanoemox.modeling.modeling_nanoemox import EncoderOutputs, NanoEmoXForConditionalGeneration
    from nanoemox.modeling.processing import MEDIA_KEYS, NanoEmoXProcessor, stack_tensors

    torch.manual_seed(0)
    model = NanoEmoXForConditionalGeneration.from_preset(ctx.preset)
    processor = NanoEmoXProcessor(model.config, model.tokenizer)
    samples, exs, batch = build_batch(ctx, model, processor)
    media = {k: batch[k] for k in MEDIA_KEYS if k in batch}

    model.set_phase("3")
    model.train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-6)
    # Fill the cache the way training does: one entry per sample, encoder outputs without batch dim.
    cache = FeatureCache(ctx.workdir / "feature-cache")
    with torch.no_grad():
        enc = model.encode(**media).to_dict()
    keys = [f"{s.id}:bench" for s in samples]
    for i, k in enumerate(keys):
        cache.put(k, "bench-encoders", {name: v[i].contiguous() for name, v in enc.items()})

    def step(encoder_outputs=None) -> None:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                     encoder_outputs=encoder_outputs, **({} if encoder_outputs is not None else media))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def cached() -> None:
        hits = [cache.get(k, "bench-encoders") for k in keys]
        step(EncoderOutputs(**stack_tensors(hits)))

    times = interleave({"cached": cached, "recompute": step}, ctx.repeats)
    speed = ratios(times["recompute"], times["cached"])
    t = Table(TITLE, ["case", "speedup (recompute / cached), median [min..max]", "target"])
    goal = target(statistics.median(speed), 3.0, ">=") + ("" if ctx.preset == "small" else " (target is for the small preset)")
    t.rows.append([f"{ctx.preset} preset, batch {BATCH}", spread(speed, unit="x"), goal])
    L = batch["input_ids"].shape[1]
    t.notes.append(f"{ctx.repeats} interleaved repetitions after a warm-up; task mer, prompt+answer {L} tokens, modalities "
                   f"{', '.join(sorted(exs[0].modalities))}; the cached step reads {len(keys)} safetensors entries from disk "
                   f"(cache stats {cache.stats})")
    return [t]
