"""What the curriculum trainer needs to run the same way on one process, under DDP and under FSDP.

- `PhaseObjective`: the phase's loss as one module. DDP and FSDP hook their gradient sync and
  parameter gathering on the forward of the module they wrap, so the align objective (which never
  calls the model's own forward) goes through this wrapper too; no hand-written all-reduce.
- FSDP: on GPUs accelerate applies FSDP (`accelerate launch --config_file ...fsdp.yaml`). accelerate
  has no FSDP for CPU processes, so there (``ACCELERATE_USE_FSDP=true`` under torchrun or
  ``accelerate launch``, gloo backend) nanoemox applies torch's FSDP2 `fully_shard` itself: each
  block named in the model's `_no_split_modules`, then the root.
- Full (unsharded) model and optimizer state for checkpoints, and every rank's RNG state.
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..modeling.modeling_nanoemox import EncoderOutputs
from .objectives import alignment_loss


class PhaseObjective(nn.Module):
    """Loss of one batch for the phase's objective: ``lm`` (answer tokens through the whole model)
    or ``align`` (adapter outputs onto answer-word embeddings). Returns (loss, idle): idle when no
    trainable part saw input; the loss is then a zero that still reaches every trainable tensor, so
    each rank runs the same backward and collectives."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._no_split_modules = list(getattr(model, "_no_split_modules", None) or [])

    def forward(self, objective: str, enc: EncoderOutputs, modalities: Sequence[frozenset[str]] | None = None,
                targets: torch.Tensor | None = None, batch: dict[str, torch.Tensor] | None = None):
        if objective == "align":
            loss = alignment_loss(self.model, enc, modalities, targets)
        else:
            loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"], encoder_outputs=enc).loss
        if loss is not None and loss.requires_grad:
            return loss, False
        zero = sum((_local(p).sum() * 0.0 for p in self.model.parameters() if p.requires_grad), torch.zeros((), device=enc_device(enc)))
        return (zero if loss is None else loss + zero), True


def _local(p: torch.Tensor) -> torch.Tensor:
    return p.to_local() if hasattr(p, "to_local") else p  # an FSDP shard outside its unit's forward


def enc_device(enc: EncoderOutputs) -> torch.device:
    for v in enc.to_dict().values():
        return v.device
    return torch.device("cpu")


def cpu_fsdp_requested(accelerator) -> bool:
    """FSDP asked for (accelerate's variable) where accelerate itself will not apply it (CPU processes)."""
    from accelerate.utils import DistributedType

    wanted = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    return wanted and accelerator.distributed_type == DistributedType.MULTI_CPU


def is_sharded(accelerator, cpu_fsdp: bool) -> bool:
    from accelerate.utils import DistributedType

    return cpu_fsdp or accelerator.distributed_type == DistributedType.FSDP


def shard_fsdp2(module: nn.Module) -> nn.Module:
    """torch FSDP2 on `module` in place: every block whose class is in `_no_split_modules` (decoder
    layers, Q-Former blocks, fusion experts ...) becomes its own unit, then the root."""
    from torch.distributed.fsdp import fully_shard

    names = set(getattr(module, "_no_split_modules", None) or [])
    blocks = [m for m in module.modules() if type(m).__name__ in names and m is not module]
    inner = {id(c) for b in blocks for c in b.modules() if c is not b}  # only the outermost of nested blocks
    for b in blocks:
        if id(b) not in inner:
            fully_shard(b)
    fully_shard(module)
    return module


@contextlib.contextmanager
def fsdp_no_sync(model: nn.Module):
    """FSDP2's way of accumulating gradients without reduce-scattering them."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_tensor(v: torch.Tensor) -> torch.Tensor:
    """A DTensor shard gathered into the whole tensor (a collective: every rank must call it)."""
    return v.full_tensor() if hasattr(v, "full_tensor") else v


def full_state(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {k: full_tensor(sd[k]).detach().contiguous().cpu().clone() for k in names}


def load_full_state(model: nn.Module, state: dict[str, torch.Tensor], sharded: bool) -> None:
    if not sharded:
        model.load_state_dict(state, strict=False)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))


def optimizer_state(model: nn.Module, optimizer, sharded: bool) -> dict[str, Any]:
    if not sharded:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, _raw(optimizer), options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer, state: dict[str, Any], sharded: bool) -> None:
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, _raw(optimizer), state, options=StateDictOptions(full_state_dict=True))


def _raw(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng(accelerator) -> list[dict[str, Any]] | None:
    """Every rank's RNG state, on the main process (rank order); None elsewhere."""
    mine = rng_state()
    if accelerator.num_processes == 1:
        return [mine]
    import torch.distributed as dist

    out = [None] * accelerator.num_processes if accelerator.is_main_process else None
    dist.gather_object(mine, out, dst=0)
    return out
