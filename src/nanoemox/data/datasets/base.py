"""The adapter registry, the conversion result, and what every adapter shares: media-path
remapping, tolerant table readers, label normalisation.

Media path rule (documented for users in `nanoemox data convert --help`)
------------------------------------------------------------------------
Annotation files point at media in one of two ways:

1. an absolute path on the authors' disk (MIntRec, CREMA-D: `/home/.../dataset/MIntRec/video/
   S05_E16_329.mp4`). The path is cut after the **last** component equal (case-insensitively) to
   one of the dataset's folder names (`MIntRec`, `crema_d`, ...) and the tail (`video/S05_E16_
   329.mp4`) is joined onto the media root. When no component matches, the tail is the file name.
2. a clip name or relative path (CSV formats: `sample_00000023`, `dia0_utt3`, `Raw/vid/1`). It is
   joined onto the media root, trying the usual extensions.

When the joined path does not exist, the media root is indexed once (recursively) and the file is
looked up by file name, then by stem with any media extension, then (frame-folder datasets) as a
folder of the same name; a name found in several folders is ambiguous and not guessed. The media root is `--media-root`, or the annotation file's folder. A
file found nowhere is kept at its joined path and listed in `missing_media`.
"""
from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ...errors import DataError
from ..schema import AffectSample

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_ALL_EXTS = VIDEO_EXTS + AUDIO_EXTS + IMAGE_EXTS
_MAX_INDEX_FILES = 2_000_000


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()


# --- result and registry -------------------------------------------------------------------------
@dataclass
class ConversionResult:
    samples: list[AffectSample] = field(default_factory=list)
    missing_media: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    format: str = ""
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self, first: int = 5) -> dict[str, Any]:
        from collections import Counter

        tasks = Counter(t for s in self.samples for t in (s.tasks() or ["none"]))
        return {
            "format": self.format,
            "source": self.source,
            "records": len(self.samples),
            "tasks": dict(sorted(tasks.items())),
            "missing_media": len(self.missing_media),
            "missing_examples": self.missing_media[:first],
            "skipped": len(self.skipped),
            "skipped_examples": [f"{w}: {r}" for w, r in self.skipped[:first]],
        }


@dataclass(frozen=True)
class FormatSpec:
    name: str
    adapter: Callable[["Context"], Iterable[AffectSample]]
    description: str
    task: str | None
    dataset_dirs: tuple[str, ...]
    media: str  # "video", "audio", "image" or "frames"
    aliases: tuple[str, ...] = ()


_REGISTRY: dict[str, FormatSpec] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register(
    name: str,
    *,
    description: str = "",
    task: str | None = None,
    dataset_dirs: Sequence[str] = (),
    media: str = "video",
    aliases: Sequence[str] = (),
):
    """Decorator: `@register("mintrec", ...)` on `adapter(ctx) -> iterable of AffectSample`."""

    def deco(fn):
        spec = FormatSpec(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0], task, tuple(dataset_dirs), media, tuple(aliases))
        _REGISTRY[name] = spec
        for a in (name, *aliases):
            _ALIASES[_key(a)] = name
        return fn

    return deco


def get_format(name: str) -> FormatSpec:
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        raise DataError(f"unknown dataset format {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[canonical]


def formats() -> list[FormatSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def convert(fmt: str, src: str | os.PathLike, media_root: str | os.PathLike | None = None, **options: Any) -> ConversionResult:
    """Read a dataset's annotation file (or folder) `src` in format `fmt` into AffectSamples."""
    spec = get_format(fmt)
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: not found")
    root = Path(media_root) if media_root else (src if src.is_dir() else src.parent)
    if media_root and not root.is_dir():
        raise DataError(f"--media-root {root}: not a folder")
    ctx = Context(spec=spec, src=src, locator=MediaLocator(root, spec.dataset_dirs, spec.media), options=options)
    samples: list[AffectSample] = []
    seen: dict[str, int] = {}
    for s in spec.adapter(ctx):
        if s.id in seen:  # ids must be unique within a manifest
            seen[s.id] += 1
            s.id = f"{s.id}#{seen[s.id]}"
        else:
            seen[s.id] = 1
        if not s.source:
            s.source = spec.name
        samples.append(s)
    missing = [m for s in samples for m in (s.video, s.audio, s.image) if m and not os.path.exists(m)]
    return ConversionResult(samples=samples, missing_media=missing, skipped=ctx.skipped, format=spec.name, source=str(src))


@dataclass
class Context:
    spec: FormatSpec
    src: Path
    locator: "MediaLocator"
    options: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append((str(where), reason))

    def where(self, n: int | str, path: Path | None = None) -> str:
        return f"{(path or self.src).name}:{n}"


# --- media paths ---------------------------------------------------------------------------------
class MediaLocator:
    """Maps the paths and names found in annotations onto files under the media root (module doc)."""

    def __init__(self, root: Path, dataset_dirs: Sequence[str] = (), media: str = "video"):
        self.root = root.resolve()
        self.dataset_dirs = {d.lower() for d in dataset_dirs}
        self.media = media
        self._by_name: dict[str, list[str]] | None = None
        self._by_stem: dict[str, list[str]] | None = None
        self._dirs: dict[str, list[str]] | None = None
        self._rel_files: set[str] = set()
        self._rel_dirs: set[str] = set()
        self._truncated = False

    @property
    def exts(self) -> tuple[str, ...]:
        order = {"video": VIDEO_EXTS + AUDIO_EXTS, "audio": AUDIO_EXTS + VIDEO_EXTS, "image": IMAGE_EXTS + VIDEO_EXTS}
        return order.get(self.media, VIDEO_EXTS + AUDIO_EXTS + IMAGE_EXTS)

    def tail(self, author_path: str) -> str:
        """The part of an authors' path kept under the media root (rule 1 of the module doc)."""
        parts = [p for p in re.split(r"[\\/]+", str(author_path).strip()) if p not in ("", ".")]
        if not parts:
            return ""
        cut = None
        for i, p in enumerate(parts[:-1]):
            if p.lower() in self.dataset_dirs:
                cut = i
        return "/".join(parts[cut + 1 :] if cut is not None else parts[-1:])

    def remap(self, author_path: str) -> str:
        tail = self.tail(author_path)
        if not tail:
            return ""
        if self._exists(tail):
            return str(self.root / tail)
        found = self._lookup(Path(tail).name, allow_dir=self.media == "frames")
        return found or str(self.root / tail)

    def by_name(self, *candidates: str, allow_dir: bool = False, default_ext: str | None = None) -> str:
        """The first candidate (relative path or stem, extension optional) that exists under the
        root, directly or through the index; else the first candidate joined onto the root (with
        `default_ext`, or the format's main extension, when it has none)."""
        cands = [str(c).strip().replace("\\", "/").strip("/") for c in candidates if c and str(c).strip()]
        if not cands:
            return ""
        root = str(self.root)
        for c in cands:
            if _ext(c) in _ALL_EXTS:
                if self._exists(c):
                    return os.path.join(root, c)
                continue
            for ext in self.exts:
                if self._exists(c + ext):
                    return os.path.join(root, c + ext)
            if allow_dir and self._exists(c, directory=True):
                return os.path.join(root, c)
        for c in cands:
            found = self._lookup(c.rsplit("/", 1)[-1], allow_dir=allow_dir)
            if found:
                return found
        first = cands[0]
        if _ext(first) not in _ALL_EXTS:
            if default_ext is not None:
                first += default_ext
            elif not allow_dir:
                first += self.exts[0]
        return os.path.join(root, first)

    def _exists(self, rel: str, directory: bool = False) -> bool:
        self._build_index()
        key = rel.replace("\\", "/").strip("/")
        if self._truncated:  # index incomplete: ask the file system
            p = Path(self.root, key)
            return p.is_dir() if directory else p.exists()
        return key in (self._rel_dirs if directory else self._rel_files)

    def _lookup(self, name: str, allow_dir: bool = False) -> str | None:
        """A unique file (or folder) of that name under the root; None when absent or ambiguous
        (the same name in several folders, e.g. MELD's train and test splits)."""
        self._build_index()
        key = name.lower()
        hits = self._by_name.get(key)
        if hits:
            return hits[0] if len(hits) == 1 else None
        stem = key.rsplit(".", 1)[0] if _ext(key) in _ALL_EXTS else key
        hits = self._by_stem.get(stem)
        if hits:
            rank = {e: i for i, e in enumerate(self.exts)}
            best = min(rank.get(_ext(h), 99) for h in hits)
            top = [h for h in hits if rank.get(_ext(h), 99) == best]
            return top[0] if len(top) == 1 else None
        if allow_dir:
            dirs = self._dirs.get(stem)
            if dirs and len(dirs) == 1:
                return dirs[0]
        return None

    def _build_index(self) -> None:
        """Walk the media root once: relative paths of files and folders, and lookups by name."""
        if self._by_name is not None:
            return
        by_name: dict[str, list[str]] = {}
        by_stem: dict[str, list[str]] = {}
        dirs: dict[str, list[str]] = {}
        rel_files: set[str] = set()
        rel_dirs: set[str] = set()
        n = 0
        truncated = False
        root = str(self.root)
        if self.root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel_dir = os.path.relpath(dirpath, root)
                rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
                for d in dirnames:
                    dirs.setdefault(d.lower(), []).append(os.path.join(dirpath, d))
                    rel_dirs.add(rel_dir + d)
                for f in sorted(filenames):
                    ext = os.path.splitext(f)[1].lower()
                    if ext not in _ALL_EXTS:
                        continue
                    full = os.path.join(dirpath, f)
                    rel_files.add(rel_dir + f)
                    by_name.setdefault(f.lower(), []).append(full)
                    by_stem.setdefault(os.path.splitext(f)[0].lower(), []).append(full)
                    n += 1
                if n > _MAX_INDEX_FILES:
                    truncated = True
                    break
        self._by_name, self._by_stem, self._dirs = by_name, by_stem, dirs
        self._rel_files, self._rel_dirs, self._truncated = rel_files, rel_dirs, truncated


# --- readers -------------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "utf-8"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("cp1252", errors="replace")


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        # JSON Lines?
        text = read_text(path)
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return rows


def read_table(path: Path, *, header: bool | None = None, sep: str | None = None) -> list[dict[str, str]]:
    """Rows of a CSV / TSV / space-separated / Excel table as dicts keyed by lower-cased header
    (or by column number "0", "1", ... when the file has no header)."""
    if path.suffix.lower() in (".xlsx", ".xls"):
        import pandas as pd

        try:
            df = pd.read_excel(path, dtype=str, header=0 if header is not False else None)
        except Exception as e:
            raise DataError(f"{path}: cannot read the spreadsheet ({e})") from None
        df = df.fillna("")
        cols = [str(c).strip().lower() for c in df.columns]
        return [dict(zip(cols, (str(v).strip() for v in row))) for row in df.itertuples(index=False)]
    text = read_text(path)
    if sep is None:
        first = text.split("\n", 1)[0]
        sep = "\t" if "\t" in first else "," if "," in first else (" " if " " in first.strip() else ",")
    rows = list(csv.reader(io.StringIO(text), delimiter=sep))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return []
    if header is None:
        header = _looks_like_header(rows[0])
    if header:
        cols = [c.strip().lower() for c in rows[0]]
        body = rows[1:]
    else:
        cols = [str(i) for i in range(max(len(r) for r in rows))]
        body = rows
    return [{cols[i]: (r[i].strip() if i < len(r) else "") for i in range(len(cols))} for r in body]


_HEADER_WORDS = {
    "name", "names", "id", "label", "labels", "text", "emotion", "emotions", "video", "video_id", "clip_id",
    "utterance", "season", "episode", "clip", "dialogue_id", "utterance_id", "discrete", "openset", "reason",
    "reasons", "subtitle", "subtitles", "sentiment", "index", "video_name", "path", "file", "mode", "english",
    "chinese", "valence", "speaker", "score", "intent", "transcript",
}


def _looks_like_header(row: Sequence[str]) -> bool:
    cells = [c.strip().lower() for c in row]
    return any(c in _HEADER_WORDS or c.replace(" ", "_") in _HEADER_WORDS for c in cells)


def pick(row: dict[str, str], *names: str, default: str = "") -> str:
    """The first non-empty value among the given column names (case-insensitive, `_`/space/`.`
    insensitive)."""
    norm = {re.sub(r"[\s_.\-]", "", k.lower()): v for k, v in row.items()}
    for n in names:
        v = norm.get(re.sub(r"[\s_.\-]", "", n.lower()))
        if v is not None and str(v).strip() != "":
            return str(v).strip()
    return default


def has_column(rows: Sequence[dict[str, str]], *names: str) -> bool:
    if not rows:
        return False
    keys = {re.sub(r"[\s_.\-]", "", k.lower()) for k in rows[0]}
    return any(re.sub(r"[\s_.\-]", "", n.lower()) in keys for n in names)


def parse_label_list(value: Any) -> list[str]:
    """Open-vocabulary labels from a list, a Python / JSON list literal, or a comma / semicolon /
    Chinese-comma separated string; lower-cased, deduplicated, order kept."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        text = str(value).strip()
        if not text:
            return []
        items = None
        if text[0] in "[(":
            try:
                items = [str(v) for v in ast.literal_eval(text)]
            except (ValueError, SyntaxError):
                items = None
        if items is None:
            items = re.split(r"[,;，、；/|]", text.strip("[]()"))
    out: list[str] = []
    for it in items:
        w = it.strip().strip("'\"").strip().lower()
        if w and w not in out:
            out.append(w)
    return out


def fix_mojibake(text: str) -> str:
    """Undo UTF-8 read as cp1252 ("Iâ€™m" -> "I’m"), as found in MELD's CSVs."""
    if not text or not any(m in text for m in ("â€", "Ã", "Â")):
        return text
    try:
        return text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


# --- labels --------------------------------------------------------------------------------------
_EMOTION_ALIASES = {
    "anger": "angry", "angry": "angry", "ang": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fea": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy", "exc": "happy", "excited": "happy",
    "sad": "sad", "sadness": "sad", "sorrow": "sad",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "neutral": "neutral", "neu": "neutral", "calm": "neutral",
}


def basic_emotion(label: str | None) -> str | None:
    """A dataset's emotion word mapped to one of schema.BASIC_EMOTIONS, or None."""
    if not label:
        return None
    return _EMOTION_ALIASES.get(str(label).strip().lower())


def emotion_label(label: str | None) -> str | None:
    """Basic emotions normalised (anger -> angry, joy -> happy); other words lower-cased as they are
    (MER2023's "worried", MERR's "doubt")."""
    if label is None or not str(label).strip():
        return None
    return basic_emotion(label) or str(label).strip().lower()


def split_from_name(path: Path) -> str | None:
    n = path.name.lower()
    for s in ("train", "dev", "valid", "val", "test"):
        if re.search(rf"(^|[^a-z]){s}", n):
            return {"valid": "val", "dev": "val"}.get(s, s)
    return None


def iter_rows(ctx: Context, path: Path | None = None, **kw) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, row) for each data row of a table; `where` is "file:row N" (N counts data rows)."""
    path = path or ctx.src
    for i, row in enumerate(read_table(path, **kw), 1):
        yield f"{path.name}:row {i}", row
