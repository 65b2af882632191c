"""MER-UniBench emotion-wheel metrics: the open-vocabulary set F-score and the MER hit rate.

Mapping (spec section 5), per word, per wheel w in 1..5 and level L in {level1, level2}:
  1. word form -> base words          (`format.csv`: "angrily" -> "angry")
  2. base word -> wheel words          (`synonym.xlsx`, eight runs merged: a synonym maps to the
                                        wheel word it was generated for, a wheel word to itself)
  3. the alphabetically first of all those wheel words that lies on wheel w -> its level-L
     cluster (`wheelN.xlsx`); a word that reaches no wheel word is dropped.

Semantics follow the public MER-UniBench/AffectGPT evaluation code (re-implemented here): label
strings are split like its `string_to_list` (outer [ ] removed, split on commas and quotes), then
lower-cased and stripped; samples whose mapped gold set is empty are skipped; an empty mapped
prediction scores precision 0 and recall 0. Deliberate differences, all on inputs where the
reference crashes or returns NaN: F is 0 when P + R = 0 (reference: NaN), a metric over zero
scored samples is 0 with `n == 0` (reference: NaN), and a base word missing from the synonym
table maps nowhere (reference: KeyError).

Speed: every known word form gets, per level, a (5,) row of uint64 cluster bit masks (a wheel has
at most 48 clusters per level). A sample's mapped set is then the OR of its words' masks, and the
set sizes are popcounts, so scoring is a few numpy passes over all samples at once.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

LEVELS = ("level1", "level2")
WHEEL_FILES = ("format.csv", "synonym.xlsx", *(f"wheel{i}.xlsx" for i in range(1, 6)))
BUILTIN_SOURCE = "builtin taxonomy (nanoemox's own, NOT MER-UniBench; scores are not comparable to published numbers)"

_SPLIT_RE = re.compile("['\",]")


def parse_label_list(value) -> list[str]:
    """A label list from a string such as "[Happy, 'excited' ]" or "sad,angry", or a list.

    Mirrors the reference `string_to_list` + `lower().strip()`: outer brackets dropped, split on
    commas and quote characters, empty items removed. None / NaN / "" give [].
    """
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple, set)):
        return [str(v).lower().strip() for v in value if str(v).strip()]
    if isinstance(value, float):  # NaN from pandas
        return [] if value != value else [str(value)]
    s = str(value)
    if not s:
        return []
    if s[0] == "[":
        s = s[1:]
    if s and s[-1] == "]":
        s = s[:-1]
    return [item.strip().lower() for item in _SPLIT_RE.split(s) if item.strip() not in ("", ",")]


# ---------------------------------------------------------------------------------------------
# the mapping tables
# ---------------------------------------------------------------------------------------------
@dataclass
class WheelSet:
    """A loaded taxonomy: per word form and level, one cluster bit mask per wheel."""

    source: str  # directory of the MER-UniBench files, or BUILTIN_SOURCE
    wheels: tuple[str, ...]
    vocab: dict[str, int]  # word form -> row (row 0 is the "maps nowhere" word)
    masks: dict[str, np.ndarray]  # level -> (len(vocab)+1, n_wheels) uint64
    clusters: dict[str, list[list[str]]]  # level -> per wheel, cluster names in bit order
    wheel_words: frozenset[str] = field(default_factory=frozenset)  # all words on any wheel

    @property
    def is_mer_unibench(self) -> bool:
        return self.source != BUILTIN_SOURCE

    # -- mapping ------------------------------------------------------------------------------
    def ids(self, labels: Iterable[str]) -> list[int]:
        get = self.vocab.get
        return [get(w, 0) for w in labels]

    def map_word(self, word: str, wheel: int | str = 0, level: str = "level1") -> str | None:
        """The cluster one word maps to on one wheel (None when it maps nowhere)."""
        w = self.wheels.index(wheel) if isinstance(wheel, str) else int(wheel)
        mask = int(self.masks[_level(level)][self.vocab.get(word.lower().strip(), 0), w])
        return self.clusters[_level(level)][w][mask.bit_length() - 1] if mask else None

    def map_labels(self, labels, wheel: int | str = 0, level: str = "level1") -> set[str]:
        """The mapped set of a label list on one wheel (the three-step mapping)."""
        return {c for c in (self.map_word(x, wheel, level) for x in parse_label_list(labels)) if c}

    def sample_masks(self, label_lists: Sequence, level: str = "level1") -> np.ndarray:
        """(n_samples, n_wheels) uint64: the OR of each sample's word masks."""
        table = self.masks[_level(level)]
        lengths = np.empty(len(label_lists), dtype=np.int64)
        flat: list[int] = []
        get = self.vocab.get
        for i, labels in enumerate(label_lists):
            words = labels if _is_clean_list(labels) else parse_label_list(labels)
            # an empty sample gets the one "maps nowhere" row so reduceat sees no empty segment
            ids = [get(w, 0) for w in words] or [0]
            flat.extend(ids)
            lengths[i] = len(ids)
        if not len(label_lists):
            return np.zeros((0, table.shape[1]), dtype=np.uint64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        return np.bitwise_or.reduceat(table[np.asarray(flat, dtype=np.int64)], starts, axis=0)


def _is_clean_list(labels) -> bool:
    # Fast path for lists the caller already normalised (e.g. the benchmark); anything else is
    # parsed. Checking every item keeps mis-cased input correct.
    return isinstance(labels, list) and all(isinstance(x, str) and x == x.strip().lower() and x for x in labels)


def _level(level: str) -> str:
    if level not in LEVELS:
        raise ConfigError(f"unknown wheel level {level!r} (expected level1 or level2)")
    return level


def _read_wheel(path: Path) -> list[tuple[str, str, str]]:
    """Rows (level1, level2, level3) with blank cells carried down, lower-cased and stripped."""
    import pandas as pd

    df = pd.read_excel(path)
    for col in ("level1", "level2", "level3"):
        if col not in df.columns:
            raise ConfigError(f"{path}: missing column {col!r}")
    rows, cur = [], ["", "", ""]
    for l1, l2, l3 in zip(df["level1"], df["level2"], df["level3"]):
        for k, v in enumerate((l1, l2, l3)):
            if not pd.isna(v):
                cur[k] = str(v)
        rows.append(tuple(c.lower().strip() for c in cur))
    return rows


def _wheel_cluster_map(rows: list[tuple[str, str, str]], level: str) -> dict[str, str]:
    """word on the wheel -> its cluster, assigned in the reference's order (later wins)."""
    tree: dict[str, dict[str, list[str]]] = {}
    for l1, l2, l3 in rows:
        tree.setdefault(l1, {}).setdefault(l2, []).append(l3)
    out: dict[str, str] = {}
    for l1, sub in tree.items():
        out[l1] = l1 if level == "level1" else sorted(sub)[0]
        for l2, leaves in sub.items():
            out[l2] = l1 if level == "level1" else l2
            for l3 in leaves:
                out[l3] = l1 if level == "level1" else l2
    return out


def _build(source: str, format2bases: Mapping[str, list[str]], base2wheel: Mapping[str, list[str]],
           wheel_rows: Mapping[str, list[tuple[str, str, str]]]) -> WheelSet:
    wheels = tuple(wheel_rows)
    vocab = {w: i + 1 for i, w in enumerate(format2bases)}
    # step 1+2 for every word form: the sorted list of wheel words it can reach
    reach = [sorted(r for b in format2bases[w] for r in base2wheel.get(b, ())) for w in format2bases]
    masks, clusters = {}, {}
    for level in LEVELS:
        table = np.zeros((len(vocab) + 1, len(wheels)), dtype=np.uint64)
        names_per_wheel = []
        for j, wname in enumerate(wheels):
            cmap = _wheel_cluster_map(wheel_rows[wname], level)
            names = sorted(set(cmap.values()))
            if len(names) > 64:
                raise ConfigError(f"{wname}: {len(names)} {level} clusters (at most 64 supported)")
            bit = {c: np.uint64(1) << np.uint64(k) for k, c in enumerate(names)}
            for row, cands in enumerate(reach, start=1):
                for cand in cands:  # step 3: alphabetically first word on this wheel
                    if cand in cmap:
                        table[row, j] = bit[cmap[cand]]
                        break
            names_per_wheel.append(names)
        masks[level], clusters[level] = table, names_per_wheel
    on_wheels = frozenset(w for rows in wheel_rows.values() for r in rows for w in r)
    return WheelSet(source, wheels, vocab, masks, clusters, on_wheels)


def _load_files(root: Path) -> WheelSet:
    import pandas as pd

    missing = [f for f in WHEEL_FILES if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"{root}: missing emotion-wheel file(s) {', '.join(missing)}")
    fmt = pd.read_csv(root / "format.csv")
    if not {"name", "format"} <= set(fmt.columns):
        raise ConfigError(f"{root / 'format.csv'}: expected columns name,format")
    format2bases: dict[str, list[str]] = {}
    for raw, forms in zip(fmt["name"], fmt["format"]):
        raw = "" if pd.isna(raw) else str(raw)
        for form in parse_label_list(forms):
            format2bases.setdefault(form, []).append(raw)
        format2bases.setdefault(raw, []).append(raw)
    syn = pd.read_excel(root / "synonym.xlsx")
    runs = sorted({c.split("_", 1)[1] for c in syn.columns if c.startswith("word_")})
    if not runs:
        raise ConfigError(f"{root / 'synonym.xlsx'}: no word_runN columns")
    base2wheel: dict[str, set[str]] = {}
    for run in runs:
        for word, syns in zip(syn[f"word_{run}"], syn[f"synonym_{run}"]):
            if pd.isna(word):
                continue
            word = str(word).strip().lower()
            base2wheel.setdefault(word, set()).add(word)
            for s in parse_label_list(syns):
                base2wheel.setdefault(s, set()).add(word)
    # the reference de-duplicates the merged lists; its sort makes order irrelevant
    b2w = {k: sorted(v) for k, v in base2wheel.items()}
    rows = {f"wheel{i}": _read_wheel(root / f"wheel{i}.xlsx") for i in range(1, 6)}
    return _build(str(root), format2bases, b2w, rows)


# -- the built-in fallback taxonomy -----------------------------------------------------------
# nanoemox's own small two-level wheel (level1 family -> level2 cluster -> words), used only when
# the MER-UniBench files are absent so that OV-MER and hit rate stay computable (e.g. on the
# synthetic corpus). It is one wheel, not five, and its numbers are not MER-UniBench numbers.
_BUILTIN: dict[str, dict[str, tuple[str, ...]]] = {
    "happy": {
        "joyful": ("happy", "joy", "joyful", "glad", "cheerful", "delighted", "pleased", "elated", "amused"),
        "excited": ("excited", "enthusiastic", "eager", "thrilled", "energetic", "playful"),
        "content": ("content", "satisfied", "relaxed", "relieved", "calm", "peaceful", "comfortable"),
        "proud": ("proud", "confident", "triumphant", "successful"),
        "loving": ("loving", "affectionate", "grateful", "thankful", "caring", "tender", "warm"),
        "hopeful": ("hopeful", "optimistic", "anticipating", "expectant", "trusting"),
    },
    "sad": {
        "sorrowful": ("sad", "sadness", "unhappy", "sorrowful", "depressed", "gloomy", "miserable", "heartbroken", "grief"),
        "lonely": ("lonely", "isolated", "abandoned", "rejected"),
        "disappointed": ("disappointed", "discouraged", "hopeless", "helpless", "defeated"),
        "guilty": ("guilty", "ashamed", "remorseful", "regretful", "sorry"),
        "hurt": ("hurt", "wounded", "betrayed", "devastated"),
    },
    "angry": {
        "furious": ("angry", "anger", "furious", "enraged", "mad", "rage", "outraged", "hostile"),
        "annoyed": ("annoyed", "irritated", "frustrated", "impatient", "agitated", "resentful", "dissatisfied"),
        "critical": ("critical", "sarcastic", "contemptuous", "scornful", "dismissive", "jealous"),
    },
    "fear": {
        "scared": ("fear", "afraid", "scared", "frightened", "terrified", "fearful", "panicked"),
        "anxious": ("anxious", "worried", "nervous", "tense", "uneasy", "apprehensive", "stressed", "concerned"),
        "insecure": ("insecure", "embarrassed", "shy", "awkward", "timid", "overwhelmed"),
    },
    "surprise": {
        "amazed": ("surprise", "surprised", "amazed", "astonished", "shocked", "startled", "stunned"),
        "confused": ("confused", "puzzled", "bewildered", "perplexed", "curious", "doubtful", "skeptical"),
    },
    "disgust": {
        "disgusted": ("disgust", "disgusted", "repulsed", "revolted", "disapproving", "averse", "contempt"),
        "bored": ("bored", "indifferent", "apathetic", "tired", "weary"),
    },
    "neutral": {
        "neutral": ("neutral", "serious", "composed", "thoughtful", "focused"),
    },
}
_SUFFIXES = ("", "s", "ed", "ly", "ness", "ment")


def builtin_wheelset() -> WheelSet:
    """The fallback taxonomy as a one-wheel `WheelSet` (source = BUILTIN_SOURCE)."""
    rows = [(l1, l2, w) for l1, sub in _BUILTIN.items() for l2, words in sub.items() for w in words]
    base2wheel = {w: [w] for r in rows for w in r}
    format2bases: dict[str, list[str]] = {}
    for base in base2wheel:
        stem = base[:-1] if base.endswith("e") else base
        for form in {base, *(stem + s for s in _SUFFIXES[1:]), base + "s"}:
            format2bases.setdefault(form, [])
            if base not in format2bases[form]:
                format2bases[form].append(base)
    return _build(BUILTIN_SOURCE, format2bases, base2wheel, {"builtin": rows})


_CACHE: dict[str, WheelSet] = {}


def resolve_wheel_dir(wheel_dir: str | os.PathLike | None) -> Path | None:
    """`wheel_dir`, else `$NANOEMOX_WHEEL_DIR`, else None (use the built-in taxonomy)."""
    d = wheel_dir or os.environ.get("NANOEMOX_WHEEL_DIR")
    return Path(d) if d else None


def load_wheels(wheel_dir: str | os.PathLike | None = None, *, fallback: bool = True) -> WheelSet:
    """Load (once per process and directory) the MER-UniBench wheels, or the built-in taxonomy
    when no directory is given and `fallback` is set. A named directory that lacks the files is an
    error, never a silent fallback."""
    root = resolve_wheel_dir(wheel_dir)
    if root is None:
        if not fallback:
            raise ConfigError("no emotion-wheel directory: pass --wheel-dir or set NANOEMOX_WHEEL_DIR")
        key = BUILTIN_SOURCE
        if key not in _CACHE:
            _CACHE[key] = builtin_wheelset()
        return _CACHE[key]
    key = str(root.resolve())
    if key not in _CACHE:
        if not root.is_dir():
            raise ConfigError(f"{root}: emotion-wheel directory not found")
        _CACHE[key] = _load_files(root)
    return _CACHE[key]


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def _popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a).astype(np.int64)


def wheel_set_metric(gold: Sequence, pred: Sequence, ws: WheelSet | None = None, level: str = "level1") -> dict:
    """The OV-MER emotion-wheel set metric.

    `gold` and `pred` are parallel sequences of label lists (lists, or strings parsed like the
    reference). Returns {"f", "precision", "recall", "n", "per_wheel": {wheel: {"f",
    "precision", "recall"}}, "source"}; F/P/R are the means over the wheels of each wheel's
    F = 2PR/(P+R), P and R (P, R = means over samples with a non-empty mapped gold set).
    """
    ws = ws or load_wheels()
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    g = ws.sample_masks(gold, level)
    p = ws.sample_masks(pred, level)
    ng, np_, ni = _popcount(g), _popcount(p), _popcount(g & p)
    per_wheel, rows = {}, []
    for j, name in enumerate(ws.wheels):
        keep = ng[:, j] > 0
        n = int(keep.sum())
        if n == 0:
            prec = rec = 0.0
        else:
            inter, npred, ngold = ni[keep, j], np_[keep, j], ng[keep, j]
            has = npred > 0
            precs = np.zeros(n)
            precs[has] = inter[has] / npred[has]
            prec = float(np.mean(precs))
            rec = float(np.mean(inter / ngold))
        f = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        per_wheel[name] = {"f": f, "precision": prec, "recall": rec, "n": n}
        rows.append((f, prec, rec))
    avg = np.mean(np.asarray(rows, dtype=np.float64), axis=0) if rows else np.zeros(3)
    return {
        "f": float(avg[0]),
        "precision": float(avg[1]),
        "recall": float(avg[2]),
        "n": min((v["n"] for v in per_wheel.values()), default=0),
        "n_samples": len(gold),
        "level": level,
        "per_wheel": per_wheel,
        "source": ws.source,
    }


def wheel_hit_rate(gold: Sequence, pred: Sequence, ws: WheelSet | None = None, level: str = "level1") -> dict:
    """MER hit rate: per wheel, the mean over samples whose gold label maps somewhere of 1 if the
    mapped gold label is in the mapped predicted set (the reference counts |G & P|, which is the
    same for one gold label); averaged over the wheels. `gold` items are single labels or lists."""
    ws = ws or load_wheels()
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    g = ws.sample_masks(gold, level)
    p = ws.sample_masks(pred, level)
    hits = _popcount(g & p)
    ng = _popcount(g)
    per_wheel = {}
    for j, name in enumerate(ws.wheels):
        keep = ng[:, j] > 0
        n = int(keep.sum())
        per_wheel[name] = {"hit_rate": float(np.mean(hits[keep, j])) if n else 0.0, "n": n}
    vals = [v["hit_rate"] for v in per_wheel.values()]
    return {
        "hit_rate": float(np.mean(vals)) if vals else 0.0,
        "n": min((v["n"] for v in per_wheel.values()), default=0),
        "n_samples": len(gold),
        "per_wheel": per_wheel,
        "source": ws.source,
    }


def benchmark_wheel(n: int = 10000, wheel_dir: str | os.PathLike | None = None, seed: int = 0, repeats: int = 5) -> dict:
    """Time the set metric and hit rate on `n` random samples (words drawn from the vocabulary
    plus some unknown words), after loading. Returns seconds (best of `repeats`)."""
    t0 = time.perf_counter()
    ws = load_wheels(wheel_dir)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    words = list(ws.vocab) + ["not-an-emotion", "xyzzy"]
    pick = lambda k: [words[i] for i in rng.integers(0, len(words), k)]  # noqa: E731
    gold = [pick(int(k)) for k in rng.integers(0, 5, n)]
    pred = [pick(int(k)) for k in rng.integers(0, 6, n)]
    gold1 = [g[0] if g else "" for g in gold]
    best_set = best_hit = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        res = wheel_set_metric(gold, pred, ws)
        best_set = min(best_set, time.perf_counter() - t)
        t = time.perf_counter()
        hit = wheel_hit_rate(gold1, pred, ws)
        best_hit = min(best_hit, time.perf_counter() - t)
    return {
        "n": n,
        "load_s": load_s,
        "set_metric_s": best_set,
        "hit_rate_s": best_hit,
        "f": res["f"],
        "hit_rate": hit["hit_rate"],
        "source": ws.source,
    }
