"""The P2E curriculum trainer, on accelerate (one CPU, one GPU, DDP, FSDP or DeepSpeed through
`accelerate launch` / `torchrun`).

Per phase: reset the trainable parts to the base model, load the phases named in `init`, make the
phase's parts trainable, then train on the task mixture. Every `save_every` steps an atomic
checkpoint holds the trainable tensors, optimizer, scheduler, RNG state and step; batches are a
pure function of (seed, phase, step), so `--resume` continues bit-for-bit.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.schema import read_manifest
from ..errors import ConfigError, NanoEmoXError
from ..modeling.modeling_nanoemox import EncoderOutputs, NanoEmoXForConditionalGeneration
from ..modeling.presets import get_preset
from ..modeling.processing import Example, NanoEmoXProcessor, keep_encoded, media_keys, modalities_from_encoded, stack_tensors
from ..prompts import answer_words, target_text
from ..storage import append_line, atomic_path, atomic_write_json
from .distributed import (
    PhaseObjective,
    cpu_fsdp_requested,
    full_state,
    fsdp_no_sync,
    full_tensor,
    gather_rng,
    is_sharded,
    load_full_state,
    load_optimizer_state,
    optimizer_state,
    set_rng_state,
    shard_fsdp2,
)
from .objectives import WordTargets, word_targets
from .prepared import ENCODERS, PreparedData
from .recipe import PhaseSpec, Recipe, select_fold

log = logging.getLogger(__name__)
UNIVERSE_FILE = "trainable.safetensors"


class TrainingError(NanoEmoXError):
    pass


class CurriculumTrainer:
    def __init__(self, recipe: Recipe, out_dir: str | Path, *, resume: bool = False, progress: bool = True, tensorboard: bool = False, feature_cache: str | Path | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        self.recipe = recipe
        self.out = Path(out_dir)
        if self.out.exists() and any(self.out.iterdir()) and not resume and (self.out / "recipe.json").exists():
            raise ConfigError(f"{self.out}: holds an earlier run; pass --resume to continue it, or choose another --out")
        self.resume = resume
        precision = recipe.phases[0].precision
        self.accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.progress = progress and self.accelerator.is_main_process
        self.cpu_fsdp = cpu_fsdp_requested(self.accelerator)
        self.sharded = is_sharded(self.accelerator, self.cpu_fsdp)
        self.deepspeed = self.accelerator.distributed_type.name == "DEEPSPEED"
        self._wrapped = None
        self._warned_idle = False
        set_seed(recipe.seed)  # the random parts of the base model must be identical on resume
        config = get_preset(recipe.preset).with_overrides(recipe.model_overrides)
        self.model = NanoEmoXForConditionalGeneration(config)
        self.processor = NanoEmoXProcessor(config, self.model.tokenizer)
        # The "universe": every tensor some phase trains. Phases start from its base values.
        groups = self.model.parameter_groups()
        for p in recipe.phases:
            if not p.trainable and (p.model_phase or p.name) not in config.phases:
                raise ConfigError(f"phase {p.name}: the model config defines no phase {p.model_phase or p.name!r}; set 'model_phase' or 'trainable'")
        self.phase_groups = {p.name: set(p.trainable or config.phases[p.model_phase or p.name]) for p in recipe.phases}
        trained = set().union(*self.phase_groups.values())
        self.universe = sorted(name for g in trained for name, _ in groups[g])
        self.base_state = {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in set(self.universe)}
        self.inherited: dict[str, set[str]] = {}
        self.tb = None
        if tensorboard and self.accelerator.is_main_process:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        self.feature_cache = None
        if feature_cache is not False:
            try:
                from ..data.features import FeatureCache

                self.feature_cache = FeatureCache(feature_cache) if feature_cache else FeatureCache()
            except ImportError:
                self.feature_cache = None

    # ---------------------------------------------------------------- data
    def _load_datasets(self) -> dict[str, list]:
        data = {}
        for name, spec in self.recipe.datasets.items():
            samples = select_fold(read_manifest(spec["manifest"]), spec.get("fold"))
            if spec.get("limit"):
                samples = samples[: int(spec["limit"])]
            if not samples:
                raise ConfigError(f"dataset {name!r}: {spec['manifest']} holds no samples")
            data[name] = samples
        return data

    def _pools(self, phase: PhaseSpec, data: dict[str, list]) -> list[list[str]]:
        """Per mixture entry, the sample ids that carry that entry's task target."""
        pools = []
        for m in phase.mixture:
            # a sample serves every task it has a target for (AvaMERG's reply samples also carry the
            # speaker emotion: the paper's phase 3 asks both questions of them)
            ids = [s.id for s in data[m.dataset] if s.id in self.prepared.items and _has_target(s, m.task)]
            if not ids:
                raise ConfigError(f"phase {phase.name}: dataset {m.dataset!r} has no usable samples for task {m.task!r}")
            pools.append(ids)
        return pools

    def batch_plan(self, phase_index: int, phase: PhaseSpec, step: int, pools: list[list[str]]) -> list[tuple[int, str]]:
        """The global batch of `step`: (mixture entry, sample id) pairs, a pure function of
        (seed, phase, step); mixture weights are the per-slot sampling probabilities."""
        rng = np.random.default_rng([self.recipe.seed, phase_index, step])
        w = np.array([m.weight for m in phase.mixture], dtype=np.float64)
        if phase.group_by_task:
            entries = np.full(phase.batch_size, rng.choice(len(w), p=w / w.sum()))
        else:
            entries = rng.choice(len(w), size=phase.batch_size, p=w / w.sum())
        return [(int(e), pools[e][int(rng.integers(len(pools[e])))]) for e in entries]

    def _examples(self, plan, phase: PhaseSpec, frozen: set[str], samples_by_id) -> tuple[list[Example], dict, dict]:
        exs, encs, medias = [], [], []
        for entry, sid in plan:
            m = phase.mixture[entry]
            item = self.prepared.items[sid]
            s = samples_by_id[sid]
            mods = modalities_from_encoded(item.encoded) & set(m.modalities)
            ids, labels = [], None  # align reads the adapters' outputs only: no prompt to build
            if phase.objective == "lm":
                text = "text" in m.modalities
                ids, labels = self.processor.tokenize(
                    m.task, mods, s.transcript if text else "", s.history if text else (), (s.candidates or {}).get(m.task), target_text(m.task, s)
                )
            exs.append(Example(input_ids=ids, labels=labels, id=sid, task=m.task, modalities=frozenset(mods)))
            encs.append(keep_encoded(self.prepared.encoder_outputs(sid, frozen), mods))
            medias.append({k: v for k, v in item.media.items() if _media_needed(k, mods)})
        return exs, stack_tensors(encs), stack_tensors(medias)

    # ---------------------------------------------------------------- run
    def run(self) -> Path:
        acc = self.accelerator
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / "recipe.json", self.recipe.raw)
        data = self._load_datasets()
        samples_by_id = {s.id: s for ds in data.values() for s in ds}
        trained_enc = {e for e in ENCODERS if any(e in g for g in self.phase_groups.values())}
        t0 = time.time()
        self.prepared = PreparedData(self.model, self.processor, list(samples_by_id.values()), trained_enc, cache=self.feature_cache, progress=self.progress)
        if self.prepared.bad and acc.is_main_process:
            print(f"warning: {len(self.prepared.bad)} sample(s) skipped (bad media), first: {self.prepared.bad[0][0]}: {self.prepared.bad[0][1]}")
        self._log({"event": "prepared", "samples": len(self.prepared.items), "skipped": len(self.prepared.bad), "seconds": round(time.time() - t0, 2)})
        for index, phase in enumerate(self.recipe.phases):
            self._run_phase(index, phase, data, samples_by_id)
        final = self.out / "model"
        if acc.is_main_process:
            self._set_universe(self._phase_state(self.recipe.phases[-1].name))
            self.model.set_phase(None)
            self.model.phase = self.recipe.phases[-1].name
            self.model.save_pretrained(final)
            self._log({"event": "done", "seconds": round(time.time() - t0, 2), "model": str(final)})
        acc.wait_for_everyone()
        if self.tb:
            self.tb.close()
        return final

    def _phase_dir(self, name: str) -> Path:
        return self.out / f"phase-{name}"

    def _phase_state(self, name: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self._phase_dir(name) / UNIVERSE_FILE))

    def _universe_state(self) -> dict[str, torch.Tensor]:
        if self.deepspeed and self._wrapped is not None:  # ZeRO-3 partitions parameters: gather them
            sd = self.accelerator.get_state_dict(self._wrapped)
            return {k: sd["model." + k].detach().float().contiguous().cpu().clone() for k in self.universe}
        return full_state(self.model, self.universe)

    def _set_universe(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.universe) - set(state)
        if missing:
            raise TrainingError(f"checkpoint lacks {len(missing)} trainable tensor(s), e.g. {sorted(missing)[0]} (different recipe or preset?)")
        self.model.load_state_dict({k: state[k] for k in self.universe}, strict=False)

    def _init_phase(self, phase: PhaseSpec) -> None:
        """Base values, then each init phase's parts (the groups it trained or inherited)."""
        state = dict(self.base_state)
        inherited: set[str] = set()
        groups = self.model.parameter_groups()
        for src in phase.init:
            if src == "base":
                continue
            keep = self.inherited[src]
            names = {n for g in keep for n, _ in groups[g]}
            src_state = self._phase_state(src)
            state.update({k: v for k, v in src_state.items() if k in names})
            inherited |= keep
        self._set_universe(state)
        self.inherited[phase.name] = inherited | self.phase_groups[phase.name]

    def _run_phase(self, index: int, phase: PhaseSpec, data, samples_by_id) -> None:
        acc = self.accelerator
        pdir = self._phase_dir(phase.name)
        if (pdir / "done.json").is_file():
            self._init_phase(phase)  # records what this phase passes on
            if acc.is_main_process:
                print(f"phase {phase.name}: done earlier, reusing {pdir}")
            return
        if pdir.exists() and not self.resume and acc.is_main_process:
            import shutil

            shutil.rmtree(pdir)
        self._init_phase(phase)
        if phase.trainable:
            self.model.config.phases[phase.name] = list(phase.trainable)
        self.model.set_phase(phase.name if phase.trainable else (phase.model_phase or phase.name))
        trainable_enc = {e for e in ENCODERS if any(p.requires_grad for p in getattr(self.model, e).parameters())}
        frozen = set(ENCODERS) - trainable_enc
        self.prepared.refresh_encoded(frozen, progress=self.progress)
        pools = self._pools(phase, data)
        targets = self._word_targets(phase, pools, samples_by_id) if phase.objective == "align" else {}
        model, optimizer, scheduler, params = self._prepare(phase)
        self._wrapped = model
        start = 0
        ckpt = pdir / "checkpoint"
        if self.resume and (ckpt / "state.pt").is_file():
            if self.deepspeed:
                raise TrainingError(f"{ckpt}: resuming mid-phase is not supported under DeepSpeed (finished phases are reused); restart the phase or use FSDP")
            start = self._load_checkpoint(ckpt, model, optimizer, scheduler)
            if acc.is_main_process:
                print(f"phase {phase.name}: resuming at step {start}/{phase.steps}")
        world, rank = acc.num_processes, acc.process_index
        per_rank = phase.batch_size // world
        if per_rank * world != phase.batch_size or per_rank % phase.grad_accum:
            raise ConfigError(f"phase {phase.name}: batch_size {phase.batch_size} must split evenly over {world} process(es) x grad_accum {phase.grad_accum}")
        micro = per_rank // phase.grad_accum
        from tqdm.auto import tqdm

        bar = tqdm(total=phase.steps, initial=start, desc=f"phase {phase.name}", disable=not self.progress, dynamic_ncols=True)
        model.train()
        t_last, n_last = time.time(), 0
        for step in range(start, phase.steps):
            plan = self.batch_plan(index, phase, step, pools)[rank * per_rank : (rank + 1) * per_rank]
            ctx = _StepContext(phase, step, ckpt, frozen, trainable_enc, targets, samples_by_id)
            total, idle_steps = self._accumulate(model, ctx, plan, micro)
            if self._all_idle(idle_steps == phase.grad_accum):
                optimizer.zero_grad(set_to_none=True)  # no gradient at all: AdamW must not even decay
            grad_norm = self._clip(params, phase.max_grad_norm)
            if grad_norm is not None and not torch.isfinite(torch.as_tensor(grad_norm)):
                raise TrainingError(f"phase {phase.name} step {step}: gradient norm is not finite; stopped. The last good checkpoint is {ckpt}")
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_global = acc.reduce(torch.tensor(total, device=acc.device), reduction="mean").item()
            n_last += phase.batch_size
            done = step + 1
            if done % phase.log_every == 0 or done == phase.steps:
                dt = max(time.time() - t_last, 1e-9)
                rec = {"phase": phase.name, "step": done, "loss": round(loss_global, 6), "lr": scheduler.get_last_lr()[0], "samples_per_s": round(n_last / dt, 3)}
                if grad_norm is not None:
                    rec["grad_norm"] = round(float(grad_norm), 4)
                self._log(rec)
                bar.set_postfix(loss=f"{loss_global:.3f}", lr=f"{rec['lr']:.2e}", sps=f"{rec['samples_per_s']:.1f}")
                t_last, n_last = time.time(), 0
            bar.update(1)
            if done % phase.save_every == 0 and done < phase.steps:
                self._save_checkpoint(ckpt, optimizer, scheduler, done)
        bar.close()
        acc.wait_for_everyone()
        state = self._universe_state()  # a collective under FSDP: every rank takes part
        if acc.is_main_process:
            with atomic_path(pdir / UNIVERSE_FILE) as tmp:
                from safetensors.torch import save_file

                save_file(state, str(tmp))
            atomic_write_json(pdir / "done.json", {"phase": phase.name, "steps": phase.steps, "groups": sorted(self.phase_groups[phase.name])})
        acc.wait_for_everyone()
        self._wrapped = None
        acc.free_memory()
        if self.sharded or self.deepspeed:
            self._fresh_model()  # the next phase shards / partitions a whole model again

    def _accumulate(self, model, ctx: "_StepContext", plan, micro: int) -> tuple[float, int]:
        """Forward and backward of each micro-batch of one step; returns (summed loss, idle micro-batches)."""
        acc, phase = self.accelerator, ctx.phase
        total, idle_steps = 0.0, 0
        for k in range(phase.grad_accum):
            exs, enc, media = self._examples(plan[k * micro : (k + 1) * micro], phase, ctx.frozen, ctx.samples_by_id)
            enc_out = self._encoder_outputs(enc, media, ctx.trainable_enc).to(acc.device)
            with self._no_sync(model, last=k == phase.grad_accum - 1), acc.autocast():
                if phase.objective == "align":
                    tgt = _stack_targets([ctx.targets[(ex.task, ex.id)] for ex in exs]).to(acc.device)
                    loss, idle = model("align", enc_out, modalities=[ex.modalities for ex in exs], targets=tgt)
                else:
                    batch = {k2: v.to(acc.device) for k2, v in self.processor.collate(exs).items() if k2 in ("input_ids", "attention_mask", "labels")}
                    loss, idle = model("lm", enc_out, batch=batch)
                loss = loss / phase.grad_accum
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"phase {phase.name} step {ctx.step}: loss is {loss.item()} (NaN/inf); stopped. The last good checkpoint is {ctx.ckpt} "
                    f"(resume with a lower lr, e.g. phases.{phase.name}.lr={phase.lr / 10:g})"
                )
            idle_steps += int(idle)
            if idle and not self._warned_idle:  # e.g. the text-only ablation in an adapter-only phase
                self._warned_idle = True
                log.warning("phase %s: no trainable part takes part in these batches (missing modalities?); its steps change nothing", phase.name)
            acc.backward(loss)  # DDP / FSDP sync the gradients here, whatever the objective
            total += loss.detach().float().item()
        return total, idle_steps

    # ---------------------------------------------------------------- distributed
    def _prepare(self, phase: PhaseSpec):
        """Wrap the phase objective for DDP / FSDP (accelerate; torch FSDP2 on CPU processes) and
        build the optimizer over the trainable tensors as the wrapper holds them."""
        acc = self.accelerator
        wrapper = PhaseObjective(self.model)
        if self.cpu_fsdp:
            shard_fsdp2(wrapper)  # parameters become DTensor shards: the optimizer is built after
        params = [p for p in wrapper.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=phase.lr, betas=phase.betas, weight_decay=phase.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(phase))
        if self.cpu_fsdp:
            optimizer, scheduler = acc.prepare(optimizer, scheduler)
            return wrapper, optimizer, scheduler, params
        model, optimizer, scheduler = acc.prepare(wrapper, optimizer, scheduler)
        params = [p for p in model.parameters() if p.requires_grad]  # accelerate's FSDP swaps them
        return model, optimizer, scheduler, params

    def _all_idle(self, idle: bool) -> bool:
        """True when no rank had any trainable input this step."""
        if self.accelerator.num_processes == 1:
            return idle
        flag = torch.tensor(float(idle), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() == self.accelerator.num_processes)

    def _no_sync(self, model, last: bool):
        if last:
            return contextlib.nullcontext()
        if self.cpu_fsdp:
            return fsdp_no_sync(model)
        return self.accelerator.no_sync(model)

    def _clip(self, params, max_norm: float):
        if max_norm <= 0:
            return None
        if self.cpu_fsdp:  # DTensor gradients: torch computes the global norm across shards
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            return full_tensor(norm)
        return self.accelerator.clip_grad_norm_(params, max_norm)

    def _fresh_model(self) -> None:
        """Rebuild the (unsharded) model from the same seed; the trained tensors live in the phase files."""
        from accelerate.utils import set_seed

        config = self.model.config
        set_seed(self.recipe.seed)
        self.model = NanoEmoXForConditionalGeneration(config)
        self.prepared.model = self.model

    def _word_targets(self, phase: PhaseSpec, pools, samples_by_id) -> dict[tuple[str, str], WordTargets]:
        """Align targets per (task, sample), read from the LM's embeddings before any sharding."""
        out = {}
        for m, ids in zip(phase.mixture, pools):
            for sid in ids:
                if (m.task, sid) not in out:
                    out[(m.task, sid)] = word_targets(self.model, [answer_words(m.task, samples_by_id[sid])])
        return out


    def _encoder_outputs(self, enc: dict, media: dict, trainable_enc: set[str]) -> EncoderOutputs:
        """Cached outputs of frozen encoders + the trainable encoders run on their inputs now."""
        out = EncoderOutputs(**{k: v for k, v in enc.items() if k in EncoderOutputs.__dataclass_fields__})
        dev = self.accelerator.device
        if "vision_encoder" in trainable_enc and "pixel_values" in media:
            out.frame_cls, out.frame_ms = self.model.vision_encoder(media["pixel_values"].to(dev))
            out.frame_mask = media["frame_mask"]
        if "audio_encoder" in trainable_enc and "audio_values" in media:
            out.audio_clip, out.audio_ms = self.model.audio_encoder(media["audio_values"].to(dev))
            out.audio_mask = media["audio_mask"]
        if "face_backbone" in trainable_enc and "face_values" in media:
            out.face = self.model.face_backbone(media["face_values"].to(dev))
            out.face_mask = media["face_mask"]
        return out

    # ---------------------------------------------------------------- checkpoints
    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, ckpt: Path, optimizer, scheduler, step: int) -> None:
        """Trainable tensors, optimizer, scheduler and every rank's RNG state, atomically. Gathering
        (full tensors under FSDP, RNG states) involves every rank; the main process writes."""
        acc = self.accelerator
        acc.wait_for_everyone()
        universe = self._universe_state()
        optim = None if self.deepspeed else optimizer_state(self.model, optimizer, self.sharded)
        rngs = gather_rng(acc)
        if acc.is_main_process:
            from safetensors.torch import save_file

            with atomic_path(ckpt) as tmp:
                tmp.mkdir(parents=True)
                save_file(universe, str(tmp / UNIVERSE_FILE))
                state = {"step": step, "optimizer": optim, "scheduler": scheduler.state_dict(), "rng": rngs, "world_size": acc.num_processes, "recipe": self.recipe.raw}
                torch.save(state, tmp / "state.pt")
            self._log({"event": "checkpoint", "path": str(ckpt), "step": step})
        acc.wait_for_everyone()

    def _load_checkpoint(self, ckpt: Path, model, optimizer, scheduler) -> int:
        from safetensors.torch import load_file

        state = torch.load(ckpt / "state.pt", weights_only=False)
        world = self.accelerator.num_processes
        if state.get("world_size", 1) != world:
            raise TrainingError(f"{ckpt}: written by {state.get('world_size', 1)} process(es); resume it with as many (this run has {world})")
        load_full_state(self.model, {k: v for k, v in load_file(str(ckpt / UNIVERSE_FILE)).items() if k in set(self.universe)}, self.sharded)
        load_optimizer_state(self.model, optimizer, state["optimizer"], self.sharded)
        scheduler.load_state_dict(state["scheduler"])
        if "rng" in state:
            set_rng_state(state["rng"][self.accelerator.process_index])
        else:  # checkpoints from before per-rank RNG states: the main process's state only
            torch.set_rng_state(state["torch_rng"])
            np.random.set_state(state["numpy_rng"])
        return int(state["step"])

    def _log(self, record: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        record = {"time": round(time.time(), 3), **record}
        self.out.mkdir(parents=True, exist_ok=True)
        append_line(self.out / "metrics.jsonl", json.dumps(record))
        if self.tb and "loss" in record:
            gstep = record["step"] + 100000 * [p.name for p in self.recipe.phases].index(record["phase"])
            self.tb.add_scalar(f"loss/{record['phase']}", record["loss"], gstep)
            self.tb.add_scalar(f"lr/{record['phase']}", record["lr"], gstep)


def _lr_lambda(phase: PhaseSpec):
    """Linear warmup, then cosine from lr to min_lr (or constant)."""
    floor = phase.min_lr / phase.lr if phase.lr else 0.0

    def f(step: int) -> float:
        if phase.warmup_steps and step < phase.warmup_steps:
            return (step + 1) / phase.warmup_steps
        if phase.schedule == "constant":
            return 1.0
        span = max(phase.steps - phase.warmup_steps, 1)
        progress = min((step - phase.warmup_steps) / span, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclass
class _StepContext:
    """What one optimisation step of a phase reads besides the model and its batch plan."""

    phase: PhaseSpec
    step: int
    ckpt: Path
    frozen: set[str]
    trainable_enc: set[str]
    targets: dict
    samples_by_id: dict


def _stack_targets(parts: list[WordTargets]) -> WordTargets:
    """One-sample targets into a batch, zero-padded as `word_targets` pads (rows past a sample's
    length are never read)."""
    L = max(t.seq.shape[1] for t in parts)
    seq = parts[0].seq.new_zeros((len(parts), L, parts[0].seq.shape[-1]))
    for b, t in enumerate(parts):
        seq[b, : t.seq.shape[1]] = t.seq[0]
    return WordTargets(seq, torch.cat([t.lengths for t in parts]))


def _media_needed(key: str, mods: set[str]) -> bool:
    return key in media_keys(mods)


def _has_target(sample, task: str) -> bool:
    try:
        return bool(target_text(task, sample).strip())
    except (AttributeError, TypeError):
        return False
