"""The P2E trainer on the tiny preset and a real (small) SynthAffect corpus."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from nanoemox.training.recipe import load_recipe

# Short phases keep the three full runs below (plain, killed+resumed, two-process) quick.
FAST = ["phases.1a.steps=4", "phases.1b.steps=4", "phases.2.steps=4", "phases.3.steps=10", "defaults.save_every=3"]


def _env():
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


def _train(out: Path, data: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nanoemox.cli", "train", "tiny", "--out", str(out), "--data", str(data), "--no-progress", *extra, *FAST]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900, check=False)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from nanoemox.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("synth")
    generate_corpus(root, n=24, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def plain_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "plain"
    res = _train(out, corpus)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_curriculum_runs_all_phases_and_loss_falls(plain_run):
    m = _metrics(plain_run)
    steps = [r for r in m if "loss" in r]
    assert {r["phase"] for r in steps} == {"1a", "1b", "2", "3"}
    for phase in ("1a", "1b", "2", "3"):
        assert (plain_run / f"phase-{phase}" / "done.json").is_file()
    assert all(np.isfinite([r["loss"] for r in steps]))
    # 1a and 1b use the align objective (adapter outputs vs answer-word embeddings): it must fall
    # within each phase; the answer loss (phases 2 and 3) must come down over the rest
    for phase in ("1a", "1b"):
        a = [r["loss"] for r in steps if r["phase"] == phase]
        assert a[-1] < a[0] - 0.05, (phase, a)
    lm = [r["loss"] for r in steps if r["phase"] in ("2", "3")]
    assert np.mean(lm[-3:]) < np.mean(lm[:3]) - 0.05, lm
    assert (plain_run / "model" / "model.safetensors").is_file()
    assert json.loads((plain_run / "recipe.json").read_text())["preset"] == "tiny"


def test_phases_change_only_their_parts(plain_run):
    """Compare each phase's trainable tensors with the next: only the phase's groups move; 1b
    starts from base (not 1a), and phase 2 holds both 1a's and 1b's parts."""
    st = {p: load_file(str(plain_run / f"phase-{p}" / "trainable.safetensors")) for p in ("1a", "1b", "2", "3")}
    group = lambda k: "lora" if "lora_" in k else k.split(".", 1)[0]  # noqa: E731

    def moved(a, b):
        return {group(k) for k in a if not (a[k] == b[k]).all()}

    assert moved(st["1a"], st["1b"]) == {"audio_adapter", "visual_adapter", "face_adapter"}
    # phase 2 starts from 1a's audio adapter and 1b's visual/face adapters, then trains them + fusion
    assert moved(st["2"], st["3"]) == {"audio_adapter", "visual_adapter", "face_adapter", "fusion", "lora"}
    lora_untouched = [k for k in st["2"] if "lora_B" in k]
    assert lora_untouched and all((st["2"][k] == 0).all() for k in lora_untouched)  # LoRA trains in phase 3 only
    fusion = [k for k in st["1a"] if k.startswith("fusion.")]
    assert all((st["1a"][k] == st["1b"][k]).all() for k in fusion)  # no fusion training before phase 2


def test_resume_after_sigkill_is_exact(plain_run, corpus, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "nanoemox.cli", "train", "tiny", "--out", str(out), "--data", str(corpus), "--no-progress", *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), start_new_session=True)
    deadline = time.time() + 600
    killed = False
    while time.time() < deadline and proc.poll() is None:
        ckpt = out / "phase-3" / "checkpoint" / "state.pt"
        if ckpt.is_file():
            os.killpg(proc.pid, signal.SIGKILL)  # mid-phase 3, right after its first checkpoint
            killed = True
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed, "the run finished before it could be killed"
    assert not (out / "model").exists()
    res = _train(out, corpus, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming at step" in res.stdout
    a = load_file(str(plain_run / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs after resume"


def test_two_process_run_matches_single_process(corpus, tmp_path):
    """torchrun with 2 CPU processes (accelerate's MULTI_CPU / gloo) splits the same global batch."""
    quick = ["phases.1a.steps=3", "phases.1b.steps=1", "phases.2.steps=1", "phases.3.steps=1", "defaults.save_every=100"]
    single, double = tmp_path / "one", tmp_path / "two"
    base = ["-m", "nanoemox.cli", "train", "tiny", "--data", str(corpus), "--no-progress", *quick]
    r1 = subprocess.run([sys.executable, *base, "--out", str(single)], capture_output=True, text=True, env=_env(), timeout=900)
    assert r1.returncode == 0, r1.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    r2 = subprocess.run([*torchrun, *base, "--out", str(double)], capture_output=True, text=True, env=_env(), timeout=900)
    assert r2.returncode == 0, r2.stderr[-3000:]
    l1 = [r["loss"] for r in _metrics(single) if r.get("phase") == "1a" and "loss" in r]
    l2 = [r["loss"] for r in _metrics(double) if r.get("phase") == "1a" and "loss" in r]
    assert len(l1) == len(l2) == 3
    # same samples per step; per-rank token means averaged vs one mean: close, not bitwise
    assert np.allclose(l1, l2, rtol=0.02, atol=0.02), (l1, l2)


def test_mixture_weights_are_sampling_probabilities(corpus, tmp_path):
    from nanoemox.training.trainer import CurriculumTrainer

    recipe = load_recipe("tiny", ["phases.3.batch_size=8", "phases.3.group_by_task=false"], paths={"data": str(corpus)})
    trainer = CurriculumTrainer(recipe, tmp_path / "t", progress=False, feature_cache=False)
    phase = recipe.phases[3]
    pools = [[f"s{i}" for i in range(10)] for _ in phase.mixture]
    counts = np.zeros(len(phase.mixture))
    steps = 1500
    for step in range(steps):
        for entry, _ in trainer.batch_plan(3, phase, step, pools):
            counts[entry] += 1
    w = np.array([m.weight for m in phase.mixture])
    p = w / w.sum()
    n = steps * phase.batch_size
    # each share within 4 standard errors of its weight
    assert np.all(np.abs(counts / n - p) < 4 * np.sqrt(p * (1 - p) / n)), (counts / n, p)
    # and the plan is a pure function of (seed, phase, step): what makes resume exact
    assert trainer.batch_plan(3, phase, 7, pools) == trainer.batch_plan(3, phase, 7, pools)
    # group_by_task: one entry per step for the whole batch, steps drawn with the same weights
    phase.group_by_task = True
    per_step = np.zeros(len(phase.mixture))
    for step in range(steps):
        entries = {e for e, _ in trainer.batch_plan(3, phase, step, pools)}
        assert len(entries) == 1
        per_step[entries.pop()] += 1
    assert np.all(np.abs(per_step / steps - p) < 4 * np.sqrt(p * (1 - p) / steps)), (per_step / steps, p)


def test_bad_recipe_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\ndatasets: {d: {manifest: x.jsonl}}\nphases:\n  '1a': {steps: 2, batch_size: 2, mixture: [{dataset: nope, task: mer}]}\n")
    r = subprocess.run([sys.executable, "-m", "nanoemox.cli", "train", str(bad), "--out", str(tmp_path / "o")], capture_output=True, text=True, env=_env())
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error:") and "unknown dataset 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "nanoemox.cli", "train", "tiny", "--out", str(tmp_path / "o"), "phases.9.steps=1"], capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and "override" in r.stderr


def test_phase_without_its_modality_trains_nothing_but_runs(corpus, tmp_path):
    """Text-only batches in the audio-alignment phase: the audio adapter gets no input, so the
    phase leaves it unchanged (and says so) instead of failing."""
    recipe = tmp_path / "textonly.yaml"
    recipe.write_text(
        "preset: tiny\nseed: 0\ndatasets: {d: {manifest: '{data}/train.jsonl'}}\n"
        "phases:\n  1a: {steps: 2, batch_size: 2, lr: 0.01, mixture: [{dataset: d, task: mer, modalities: []}]}\n"
    )
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "nanoemox.cli", "train", str(recipe), "--out", str(out), "--data", str(corpus), "--no-progress"],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no trainable part takes part" in r.stderr
    from nanoemox.modeling import NanoEmoXForConditionalGeneration

    import torch

    torch.manual_seed(0)
    base = NanoEmoXForConditionalGeneration.from_preset("tiny").state_dict()
    trained = load_file(str(out / "phase-1a" / "trainable.safetensors"))
    assert all(torch.equal(trained[k], base[k]) for k in trained)


def test_align_needs_label_words_and_text_can_be_left_out(corpus, tmp_path):
    """The align objective only takes tasks whose answers hold label words; a mixture entry without
    "text" trains on prompts without the subtitle, so the answer must come from the adapters."""
    from nanoemox.errors import ConfigError
    from nanoemox.training.prepared import PreparedData
    from nanoemox.training.trainer import CurriculumTrainer

    with pytest.raises(ConfigError, match="align objective needs answers with label words; eri"):
        load_recipe("tiny", {"phases.1a.mixture": [{"dataset": "synth", "task": "eri"}]}, paths={"data": str(corpus)})
    no_text = [{"dataset": "synth", "task": "mer", "modalities": ["audio"]}]
    recipe = load_recipe("tiny", {"phases.2.mixture": no_text}, paths={"data": str(corpus)})
    trainer = CurriculumTrainer(recipe, tmp_path / "t", progress=False, feature_cache=False)
    samples = trainer._load_datasets()["synth"]
    trainer.prepared = PreparedData(trainer.model, trainer.processor, samples, set(), progress=False)
    trainer.prepared.refresh_encoded({"vision_encoder", "audio_encoder", "face_backbone"}, progress=False)
    by_id = {s.id: s for s in samples}
    sid = next(s.id for s in samples if s.transcript)
    for index, with_text in ((2, False), (3, True)):  # 2: [audio] only; 3: every modality and text
        phase = recipe.phases[index]
        entry = next(i for i, m in enumerate(phase.mixture) if m.task == "mer")
        exs, _, _ = trainer._examples([(entry, sid)], phase, {"vision_encoder", "audio_encoder", "face_backbone"}, by_id)
        prompt = trainer.model.tokenizer.decode(exs[0].input_ids)
        assert (by_id[sid].transcript in prompt) is with_text, prompt
        assert ("Subtitle: none" in prompt) is not with_text
