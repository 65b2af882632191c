"""Curriculum recipes: small YAML files that name what to build and how to train each phase.

A recipe has a model (`preset` + `model_overrides`), named `datasets` (manifests, or a generated
SynthAffect corpus), `defaults` shared by every phase, and ordered `phases`. Each phase names its
trainable parts (by default the model config's list for that phase), where it starts from
(`init`: `base`, or the phases whose trained weights it loads), and a task `mixture` whose
`weight`s are real sampling probabilities per batch slot.

Paths may use `{recipe_dir}`, `{out}` and `{data}` (the synth corpus folder).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data.schema import TASKS
from ..errors import ConfigError
from ..prompts import LABEL_WORD_TASKS

# What a mixture entry may keep: the four placeholder blocks, and "text" (the subtitle and dialogue
# history). Alignment phases leave "text" out so the answer must come from the adapters.
MODALITIES = ("multi", "audio", "face", "frame", "text")
OBJECTIVES = ("lm", "align")  # see objectives.py


@dataclass
class MixtureEntry:
    dataset: str
    task: str
    weight: float
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))


@dataclass
class PhaseSpec:
    name: str
    init: list[str]  # ["base"] or names of earlier phases
    mixture: list[MixtureEntry]
    steps: int
    batch_size: int
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # cosine (linear warmup, then cosine to min_lr) | constant (after warmup)
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    precision: str = "no"  # accelerate mixed precision: no | bf16 | fp16
    trainable: list[str] | None = None  # None: the model config's list for this phase
    model_phase: str | None = None  # which model-config phase defines the trainable groups
    save_every: int = 50
    log_every: int = 1
    # One mixture entry per step for the whole batch (drawn with the mixture weights): sequences of
    # one task have similar lengths, so far less padding than mixed batches on a compute-bound CPU.
    group_by_task: bool = False
    objective: str = "lm"  # lm (answer tokens) | align (adapters onto answer-word embeddings; see objectives.py)


@dataclass
class Recipe:
    name: str
    preset: str
    seed: int
    datasets: dict[str, dict[str, Any]]
    phases: list[PhaseSpec]
    model_overrides: dict[str, Any] = field(default_factory=dict)
    synth: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the resolved recipe, saved in checkpoints
    source: str = ""


_PHASE_KEYS = {f for f in PhaseSpec.__dataclass_fields__} - {"name", "mixture"} | {"mixture"}


def builtin_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("nanoemox.recipes").iterdir() if p.name.endswith(".yaml"))


def recipe_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.suffix in (".yaml", ".yml") and not p.exists() and "/" in name_or_path:
        raise ConfigError(f"{name_or_path}: recipe file not found")
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    builtin = resources.files("nanoemox.recipes") / f"{stem}.yaml"
    if builtin.is_file():
        return Path(str(builtin))
    raise ConfigError(f"{name_or_path}: no such recipe file or built-in recipe (built-in: {', '.join(builtin_recipes())})")


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. phases.3.steps=10)")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def load_recipe(name_or_path: str, overrides: list[str] | dict[str, Any] | None = None, paths: dict[str, str] | None = None) -> Recipe:
    path = recipe_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping")
    raw = _normalise(raw)
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides or []]
    for key, value in items:
        _set_dotted(raw, key, value, path)
    subst = {"recipe_dir": str(path.parent), **(paths or {})}
    return _build(raw, path, subst)


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    phases = raw.get("phases")
    if isinstance(phases, dict):
        raw["phases"] = {str(k): v for k, v in phases.items()}
    return raw


def _set_dotted(raw: dict, dotted: str, value: Any, path: Path) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        if not isinstance(node, dict) or p not in node:
            raise ConfigError(f"override {dotted!r}: {path.name} has no {p!r} here")
        node = node[p]
    if not isinstance(node, dict):
        raise ConfigError(f"override {dotted!r}: {'.'.join(parents)} is not a mapping")
    node[leaf] = value


def _fmt(value: Any, subst: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in subst.items():
            value = value.replace("{" + k + "}", v)
    return value


def _build(raw: dict[str, Any], path: Path, subst: dict[str, str]) -> Recipe:
    where = path.name
    for key in ("preset", "phases"):
        if key not in raw:
            raise ConfigError(f"{where}: missing {key!r}")
    unknown = set(raw) - {"name", "preset", "seed", "model_overrides", "datasets", "synth", "defaults", "phases", "description"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    datasets = {}
    for name, spec in (raw.get("datasets") or {}).items():
        if not isinstance(spec, dict) or "manifest" not in spec:
            raise ConfigError(f"{where}: dataset {name!r} needs a 'manifest' path")
        datasets[name] = {**spec, "manifest": _fmt(spec["manifest"], subst)}
    defaults = raw.get("defaults") or {}
    if not isinstance(raw["phases"], dict) or not raw["phases"]:
        raise ConfigError(f"{where}: 'phases' must be a non-empty mapping of phase name -> settings")
    phases = []
    for name, spec in raw["phases"].items():
        spec = {**defaults, **(spec or {})}
        bad = set(spec) - _PHASE_KEYS
        if bad:
            raise ConfigError(f"{where}: phase {name}: unknown key(s) {', '.join(sorted(bad))}")
        for req in ("mixture", "steps", "batch_size"):
            if req not in spec:
                raise ConfigError(f"{where}: phase {name}: missing {req!r}")
        mixture = []
        for m in spec["mixture"]:
            entry = MixtureEntry(dataset=m.get("dataset"), task=m.get("task"), weight=float(m.get("weight", 1.0)), modalities=list(m.get("modalities", MODALITIES)))
            if entry.dataset not in datasets:
                raise ConfigError(f"{where}: phase {name}: mixture names unknown dataset {entry.dataset!r}")
            if entry.task not in TASKS:
                raise ConfigError(f"{where}: phase {name}: unknown task {entry.task!r} (one of {', '.join(TASKS)})")
            if entry.weight <= 0:
                raise ConfigError(f"{where}: phase {name}: mixture weights must be > 0")
            if set(entry.modalities) - set(MODALITIES):
                raise ConfigError(f"{where}: phase {name}: unknown modalities {entry.modalities}")
            mixture.append(entry)
        init = spec.get("init", "base")
        init = [init] if isinstance(init, str) else [str(i) for i in init]
        done = [p.name for p in phases]
        for i in init:
            if i != "base" and i not in done:
                raise ConfigError(f"{where}: phase {name}: init names {i!r}, which is not an earlier phase ({', '.join(done) or 'none'})")
        kwargs = {k: v for k, v in spec.items() if k not in ("mixture", "init")}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        for k in ("lr", "min_lr", "weight_decay", "max_grad_norm"):
            if k in kwargs:
                kwargs[k] = float(kwargs[k])
        phase = PhaseSpec(name=str(name), init=init, mixture=mixture, **kwargs)
        if phase.objective not in OBJECTIVES:
            raise ConfigError(f"{where}: phase {name}: objective must be {' or '.join(OBJECTIVES)}")
        if phase.objective == "align":
            wordless = sorted({m.task for m in mixture} - set(LABEL_WORD_TASKS))
            if wordless:
                raise ConfigError(f"{where}: phase {name}: the align objective needs answers with label words; {', '.join(wordless)} have none (use {', '.join(LABEL_WORD_TASKS)})")
        if phase.schedule not in ("cosine", "constant"):
            raise ConfigError(f"{where}: phase {name}: schedule must be cosine or constant")
        if phase.steps <= 0 or phase.batch_size <= 0 or phase.grad_accum <= 0:
            raise ConfigError(f"{where}: phase {name}: steps, batch_size and grad_accum must be positive")
        phases.append(phase)
    resolved = copy.deepcopy(raw)
    resolved["datasets"] = datasets
    return Recipe(
        name=str(raw.get("name", path.stem)),
        preset=raw["preset"],
        seed=int(raw.get("seed", 0)),
        datasets=datasets,
        phases=phases,
        model_overrides=dict(raw.get("model_overrides") or {}),
        synth=raw.get("synth"),
        raw=resolved,
        source=str(path),
    )
