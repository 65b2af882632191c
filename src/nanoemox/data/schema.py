"""One sample schema for every task and benchmark, and its JSONL manifest format.

Manifest format (schema version 1): UTF-8 JSON Lines, one `AffectSample` per line, as produced by
`AffectSample.to_dict()`. Every line carries `"schema": 1`. Media paths are relative to the
manifest's folder unless absolute. Fields that do not apply are null / empty and omitted on write.
In-memory arrays (`frames`, `waveform`) are never written.

Field reference
- id: unique within the manifest.
- source: dataset or generator name (e.g. "mintrec", "synthaffect").
- task: the task this record is labelled for (one of TASKS) or null when it carries targets for
  several; `AffectSample.tasks()` derives the tasks from the targets present.
- video / audio / image: media paths. frames (T,H,W,3 uint8 RGB) / waveform (N,) float32 16 kHz:
  in-memory alternatives used by the Python API.
- transcript: the utterance ("subtitle"). history: earlier dialogue turns [{"speaker", "text"}].
- emotion: one basic emotion (MER, ERG speaker emotion). sentiment: positive/negative/neutral;
  sentiment_score: float in [-3, 3] (MSA). ov_labels: open-vocabulary emotion words (OV-MER).
- reason: rationale citing clues per modality, ending with the emotion (ERI).
- intent: intent label (MIR). response: the empathic reply; chain_of_empathy: {event, emotion,
  cause, goal} (ERG).
- candidates: the closed label set offered in the prompt, keyed by task ({"mer": [...],
  "mir": [...]}).
- clues: rendered clue phrases per modality ({"face": [...], "voice": [...], "text": [...]}), so
  ERI clue overlap can be scored without an LLM judge.
- meta: anything else (dataset-specific ids, vote counts, latent generator state).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import DataError
from ..labels import BASIC_EMOTIONS  # noqa: F401 (re-exported; the vocabularies live in nanoemox.labels)

SCHEMA_VERSION = 1
TASKS = ("msa", "mer", "ovmer", "eri", "mir", "erg")
CHAIN_KEYS = ("event", "emotion", "cause", "goal")

# Target fields that make a sample usable for each task.
_TASK_TARGETS = {
    "msa": ("sentiment", "sentiment_score"),
    "mer": ("emotion",),
    "ovmer": ("ov_labels",),
    "eri": ("reason",),
    "mir": ("intent",),
    "erg": ("response",),
}


@dataclass
class AffectSample:
    id: str
    source: str = ""
    task: str | None = None
    video: str | None = None
    audio: str | None = None
    image: str | None = None
    transcript: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    emotion: str | None = None
    sentiment: str | None = None
    sentiment_score: float | None = None
    ov_labels: list[str] = field(default_factory=list)
    reason: str | None = None
    intent: str | None = None
    response: str | None = None
    chain_of_empathy: dict[str, str] | None = None
    candidates: dict[str, list[str]] = field(default_factory=dict)
    clues: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # In-memory media (Python API only, never serialised).
    frames: Any = field(default=None, repr=False, compare=False)
    waveform: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise DataError(f"sample {self.id!r}: unknown task {self.task!r} (expected one of {', '.join(TASKS)})")
        if self.sentiment is None and self.sentiment_score is not None:
            self.sentiment = sentiment_label(self.sentiment_score)

    def tasks(self) -> list[str]:
        """Tasks this sample has targets for (restricted to `task` when set)."""
        if self.task is not None:
            return [self.task]
        return [t for t, keys in _TASK_TARGETS.items() if any(_present(getattr(self, k)) for k in keys)]

    def media_path(self) -> str | None:
        return self.video or self.image or self.audio

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.name in ("frames", "waveform"):
                continue
            v = getattr(self, f.name)
            if _present(v) or f.name == "id":
                out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "") -> "AffectSample":
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(d).__name__}")
        version = d.get("schema", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise DataError(f"{where}: manifest schema {version} is not supported (this nanoemox reads {SCHEMA_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)} - {"frames", "waveform"}
        unknown = set(d) - names - {"schema"}
        if unknown:
            raise DataError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if "id" not in d:
            raise DataError(f"{where}: record has no 'id'")
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["id"] = str(kwargs["id"])
        return cls(**kwargs)

    def resolve(self, root: str | os.PathLike) -> "AffectSample":
        """Return a copy whose relative media paths are made absolute against `root`."""
        root = Path(root)
        updates = {}
        for k in ("video", "audio", "image"):
            v = getattr(self, k)
            if v and not os.path.isabs(v):
                updates[k] = str(root / v)
        return dataclasses.replace(self, **updates) if updates else self


def sentiment_label(score: float) -> str:
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def _present(v: Any) -> bool:
    return v is not None and v != "" and v != [] and v != {}


def write_manifest(path: str | os.PathLike, samples: Iterable[AffectSample]) -> int:
    """Write a manifest atomically; returns the number of records."""
    from ..storage import atomic_write_text

    lines = [json.dumps(s.to_dict(), ensure_ascii=False, sort_keys=True) for s in samples]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def iter_manifest(path: str | os.PathLike, *, resolve_media: bool = True) -> Iterator[AffectSample]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    root = path.parent
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            where = f"{path}:{lineno}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            s = AffectSample.from_dict(d, where=where)
            yield s.resolve(root) if resolve_media else s


def read_manifest(path: str | os.PathLike, *, resolve_media: bool = True) -> list[AffectSample]:
    return list(iter_manifest(path, resolve_media=resolve_media))
