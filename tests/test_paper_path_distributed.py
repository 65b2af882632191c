"""Sharded and multi-process training on 2 CPU processes (torchrun, gloo): FSDP2 matches DDP on a
phase-3 run of the tiny and the paper-miniature model; a 2-process run killed with SIGKILL and
resumed ends bit-identical to an uninterrupted one, with LoRA dropout on."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from safetensors.torch import load_file

PHASE3 = """preset: {preset}
seed: 0
model_overrides: {overrides}
datasets: {{d: {{manifest: '{{data}}/train.jsonl'}}}}
phases:
{align}  "3":
    init: {init}
    steps: {steps}
    batch_size: 4
    lr: 2.0e-3
    save_every: {save_every}
    log_every: 1
    mixture: [{{dataset: d, task: mer, weight: 1}}, {{dataset: d, task: ovmer, weight: 1}}, {{dataset: d, task: mir, weight: 1}}]
"""
# an align phase first (adapters onto answer-word embeddings, no LM forward): its gradients too
# must be synchronised by the wrapper, and phase 3 then starts from it (a fresh sharded model)
ALIGN = """  1a: {init: base, steps: 3, batch_size: 4, lr: 1.0e-2, objective: align, log_every: 1, save_every: 1000,
        mixture: [{dataset: d, task: mer, modalities: [audio]}]}
"""
_port = iter(range(29611, 29700))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from nanoemox.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("dist")
    generate_corpus(root, n=12, seed=4, progress=False)
    return root


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> dict[str, str]:
    from nanoemox.modeling.pretrained.miniature import write_miniature

    return {k: str(v) for k, v in write_miniature(tmp_path_factory.mktemp("mini")).items()}


def _recipe(tmp: Path, preset: str, steps: int, save_every: int = 1000, overrides: str = "{}", align: bool = False) -> Path:
    path = tmp / f"{preset}-phase3.yaml"
    path.write_text(PHASE3.format(preset=preset, steps=steps, save_every=save_every, overrides=overrides,
                                  align=ALIGN if align else "", init='["1a"]' if align else "base"))
    return path


def _cmd(recipe: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(next(_port))]
    return [*torchrun, "-m", "nanoemox.cli", "train", str(recipe), "--data", str(corpus), "--out", str(out), "--no-progress",
            "--feature-cache", str(out.parent / "features"), *extra]


def _env(fsdp: bool = False, extra: dict | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(extra or {}))
    env.pop("ACCELERATE_USE_FSDP", None)
    if fsdp:
        env["ACCELERATE_USE_FSDP"] = "true"
    return env


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def _losses_by_phase(out: Path) -> dict[str, list[float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    return {p: [r["loss"] for r in rows if r["phase"] == p] for p in dict.fromkeys(r["phase"] for r in rows)}


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_fsdp_matches_ddp(preset, corpus, miniature, tmp_path):
    """tiny: an align phase then phase 3; paper miniature: phase 3. DDP and FSDP2 on 2 processes each
    (one process vs DDP is tests/test_training.py's)."""
    extra = miniature if preset == "paper" else None
    # the paper architecture on the miniature checkpoints, adapters narrowed to keep the test short
    narrow = '{"adapters.qformer_hidden": 64, "adapters.qformer_ffn": 128, "adapters.qformer_heads": 4, "fusion.hidden": 64, "fusion.ffn": 64, "fusion.gate_hidden": 64}'
    recipe = _recipe(tmp_path, preset, steps=3, overrides=narrow if preset == "paper" else "{}", align=preset == "tiny")
    runs = {}
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        out = tmp_path / name
        res = subprocess.run(_cmd(recipe, corpus, out), capture_output=True, text=True, env=_env(fsdp, extra), timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        runs[name] = out
    ddp, fsdp = _losses_by_phase(runs["ddp"]), _losses_by_phase(runs["fsdp"])
    assert list(ddp) == list(fsdp) == (["1a", "3"] if preset == "tiny" else ["3"])
    for phase in ddp:
        assert len(ddp[phase]) == len(fsdp[phase]) == 3
        # identical batches and maths; only the reduction order of the gradient sync differs
        assert np.allclose(ddp[phase], fsdp[phase], rtol=1e-4, atol=1e-5), (phase, ddp[phase], fsdp[phase])
        assert ddp[phase][-1] < ddp[phase][0]  # high lr on the same few samples: it learns
    a = load_file(str(runs["ddp"] / "phase-3" / "trainable.safetensors"))
    b = load_file(str(runs["fsdp"] / "phase-3" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3, msg=k)


def test_two_process_sigkill_resume_is_bit_identical_with_dropout(corpus, tmp_path):
    recipe = _recipe(tmp_path, "tiny", steps=16, save_every=3, overrides='{"lora.dropout": 0.1}')
    plain = tmp_path / "plain"
    res = subprocess.run(_cmd(recipe, corpus, plain), capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(recipe, corpus, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    deadline, killed = time.time() + 600, False
    while time.time() < deadline and proc.poll() is None:
        if (out / "phase-3" / "checkpoint" / "state.pt").is_file():
            # both workers and the launcher, right after the first checkpoint (torchrun starts its
            # workers in sessions of their own, so they are killed by pid)
            for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                p.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.1)
    proc.wait(timeout=60)
    assert killed, "the run finished before it could be killed"
    state = torch.load(out / "phase-3" / "checkpoint" / "state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # the ranks drew different dropout masks (different sequence lengths): their RNG states differ
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    res = subprocess.run(_cmd(recipe, corpus, out, "--resume"), capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming at step" in res.stdout
    a = load_file(str(plain / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert _losses(plain)[-1] == _losses(out)[-1]
