"""Curriculum recipes: small YAML files that name what to build and how to train each phase.

A recipe has a model (`preset` + `model_overrides`), named `datasets` (manifests, or a generated
SynthAffect corpus), `defaults` shared by every phase, and ordered `phases`. Each phase names its
trainable parts (by default the model config's list for that phase), where it starts from
(`init`: `base`, or the phases whose trained weights it loads), and a task `mixture` whose
`weight`s are real sampling probabilities per batch slot.

Recipes and `key=value` overrides are validated by the pydantic models below: a wrong key, type or
value is one `ConfigError` line naming the key, the value and what was expected.

Paths may use `{recipe_dir}`, `{out}` and `{data}` (the synth corpus folder).
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..data.schema import TASKS
from ..errors import ConfigError
from ..modeling.configuration import GROUPS
from ..modeling.presets import get_preset
from ..prompts import LABEL_WORD_TASKS

# What a mixture entry may keep: the four placeholder blocks, and "text" (the subtitle and dialogue
# history). Alignment phases leave "text" out so the answer must come from the adapters.
MODALITIES = ("multi", "audio", "face", "frame", "text")
OBJECTIVES = ("lm", "align")  # see objectives.py


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MixtureEntry(_Strict):
    dataset: str
    task: str
    weight: float = Field(1.0, gt=0)
    modalities: list[str] = Field(default_factory=lambda: list(MODALITIES))

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task (one of {', '.join(TASKS)})")
        return v

    @field_validator("modalities")
    @classmethod
    def _modalities(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in MODALITIES]
        if bad:
            raise ValueError(f"unknown modalities {bad} (known: {', '.join(MODALITIES)})")
        return v


class PhaseSpec(_Strict):
    name: str
    init: list[str] = Field(default_factory=lambda: ["base"])  # ["base"] or names of earlier phases
    mixture: list[MixtureEntry] = Field(min_length=1)
    steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = 3e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "constant"] = "cosine"  # cosine: linear warmup, then cosine to min_lr
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = 1.0
    precision: Literal["no", "bf16", "fp16"] = "no"  # accelerate mixed precision
    trainable: list[str] | None = None  # None: the model config's list for this phase
    model_phase: str | None = None  # which model-config phase defines the trainable groups
    save_every: int = Field(50, gt=0)
    log_every: int = Field(1, gt=0)
    # One mixture entry per step for the whole batch (drawn with the mixture weights): sequences of
    # one task have similar lengths, so far less padding than mixed batches on a compute-bound CPU.
    group_by_task: bool = False
    objective: Literal["lm", "align"] = "lm"  # lm: answer tokens | align: adapters onto answer-word embeddings

    @field_validator("init", mode="before")
    @classmethod
    def _init(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else [str(i) for i in v] if isinstance(v, list) else v

    @field_validator("model_phase", mode="before")
    @classmethod
    def _model_phase(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, v: list[str] | None) -> list[str] | None:
        bad = [g for g in v or [] if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown part(s) {bad} (known: {', '.join(GROUPS)})")
        return v


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # converters may record provenance keys
    manifest: str
    limit: int | None = Field(None, gt=0)
    # "k/n": only the samples at positions k, k+n, k+2n, ... of the manifest. Two folds of one
    # split let the align phases and the language-model phase train on different clips, so the LM
    # learns how far each adapter's output can be trusted on clips the adapter never saw
    fold: str | None = Field(None, pattern=r"^\d+/[1-9]\d*$")

    @field_validator("fold")
    @classmethod
    def _fold(cls, v: str | None) -> str | None:
        if v is not None and int(v.split("/")[0]) >= int(v.split("/")[1]):
            raise ValueError(f"fold {v!r}: k must be below n")
        return v


def select_fold(samples: list, fold: str | None) -> list:
    """The samples of fold "k/n" (positions k, k+n, ... in manifest order); all when None."""
    if not fold:
        return samples
    k, n = (int(x) for x in fold.split("/"))
    return samples[k::n]


class SynthSpec(_Strict):
    n: int = Field(200, gt=0)
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test shares (stratified by emotion)


class RecipeFile(_Strict):
    """The YAML file as written (before defaults are merged into phases)."""

    name: str | None = None
    description: str | None = None
    preset: str
    seed: int = 0
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    synth: SynthSpec | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    phases: dict[str, dict[str, Any] | None] = Field(min_length=1)


class Recipe(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    preset: str
    seed: int
    datasets: dict[str, dict[str, Any]]  # name -> {"manifest": path, "limit": n | None, ...}
    phases: list[PhaseSpec]
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    synth: dict[str, Any] | None = None
    raw: dict[str, Any] = Field(default_factory=dict)  # the resolved recipe, saved in checkpoints
    source: str = ""


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


def read_recipe_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping")
    raw = copy.deepcopy(raw)
    if isinstance(raw.get("phases"), dict):  # YAML reads `2:` as an int key
        raw["phases"] = {str(k): v for k, v in raw["phases"].items()}
    return raw


def load_recipe(name_or_path: str, overrides: list[str] | dict[str, Any] | None = None, paths: dict[str, str] | None = None) -> Recipe:
    path = recipe_path(name_or_path)
    raw = read_recipe_yaml(path)
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides or []]
    for key, value in items:
        _set_dotted(raw, key, value, path)
    subst = {"recipe_dir": str(path.parent), **(paths or {})}
    return _build(raw, path, subst)


def prepare_recipe(recipe_name: str, out: Path, data: str | None, overrides, progress: bool = True, n: int | None = None) -> Recipe:
    """Load and validate a recipe, then generate its SynthAffect corpus into {data} (default
    `out/data`) if it asks for one and the folder holds none yet (validation first: a typo must not
    cost a corpus generation)."""
    data_dir = Path(data) if data else Path(out) / "data"
    recipe = load_recipe(recipe_name, overrides, paths={"data": str(data_dir), "out": str(out)})
    synth = dict(recipe.synth or {})
    if n:
        synth["n"] = n
    if synth and not (data_dir / "train.jsonl").is_file():
        spec = _validate(SynthSpec, synth, f"{recipe_name}: synth", ["synth"])
        from ..data.synth import generate_corpus

        generate_corpus(data_dir, n=spec.n, seed=spec.seed, split_ratios=spec.split, progress=progress)
    return recipe


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


def _validate(model: type[BaseModel], data: Any, where: str, prefix: list[str]):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, where, prefix)) from None


def validation_message(err: ValidationError, where: str, prefix: list[str] | None = None) -> str:
    """The first pydantic error as one line: `where: key = value: expected ...`."""
    e = err.errors()[0]
    key = ".".join([*(prefix or []), *(str(x) for x in e["loc"])])
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    if e["type"] == "extra_forbidden":
        return f"{where}: unknown key {key!r}{more}"
    if e["type"] == "missing":
        return f"{where}: missing key {key!r}{more}"
    msg = e["msg"].removeprefix("Value error, ").replace("Input should be", "expected")
    return f"{where}: {key} = {e['input']!r}: {msg}{more}"


def _build(raw: dict[str, Any], path: Path, subst: dict[str, str]) -> Recipe:
    where = path.name
    spec = _validate(RecipeFile, raw, where, [])
    try:  # the preset name and model_overrides, typed by the model config (cheap: no weights)
        get_preset(spec.preset).with_overrides(spec.model_overrides)
    except ConfigError as e:
        raise ConfigError(f"{where}: preset / model_overrides: {e}") from None
    datasets = {}
    for name, ds in spec.datasets.items():
        datasets[name] = {**ds.model_dump(exclude_none=True), "manifest": _fmt(ds.manifest, subst)}
    phases: list[PhaseSpec] = []
    for name, settings in spec.phases.items():
        merged = {**spec.defaults, **(settings or {}), "name": str(name)}
        phase = _validate(PhaseSpec, merged, where, ["phases", str(name)])
        _check_phase(phase, datasets, [p.name for p in phases], f"{where}: phase {name}")
        phases.append(phase)
    resolved = copy.deepcopy(raw)
    resolved["datasets"] = datasets
    return Recipe(
        name=spec.name or path.stem,
        preset=spec.preset,
        seed=spec.seed,
        datasets=datasets,
        phases=phases,
        model_overrides=dict(spec.model_overrides),
        synth=spec.synth.model_dump() if spec.synth else None,
        raw=resolved,
        source=str(path),
    )


def _check_phase(phase: PhaseSpec, datasets: dict[str, Any], earlier: list[str], where: str) -> None:
    """Rules that span fields: datasets and init phases must exist, align needs label words."""
    for i, m in enumerate(phase.mixture):
        if m.dataset not in datasets:
            raise ConfigError(f"{where}: mixture.{i}.dataset: unknown dataset {m.dataset!r} (recipe has {', '.join(datasets) or 'none'})")
    for i in phase.init:
        if i != "base" and i not in earlier:
            raise ConfigError(f"{where}: init names {i!r}, which is not an earlier phase ({', '.join(earlier) or 'none'})")
    if phase.objective == "align":
        wordless = sorted({m.task for m in phase.mixture} - set(LABEL_WORD_TASKS))
        if wordless:
            raise ConfigError(f"{where}: the align objective needs answers with label words; {', '.join(wordless)} have none (use {', '.join(LABEL_WORD_TASKS)})")
