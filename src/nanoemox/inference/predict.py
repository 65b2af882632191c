"""Batch prediction: a manifest -> a JSONL prediction file (the engine behind `nanoemox predict`).

Prediction files: one JSON object per (id, task) line (see parsing.PREDICTION_FIELDS), appended
with one write + fsync each, so an interrupted run leaves only whole lines and a rerun skips the
(id, task) pairs already written.

Protocols: "native" asks each sample its own tasks (or `tasks`); "unibench" asks every sample
the open-vocabulary `[Recogn_OV]` question whatever its dataset's task, as MER-UniBench does for
all nine of its datasets (the answer is turned into labels later by an extractor).

Several processes (`torchrun --nproc-per-node N -m nanoemox.cli predict ...`): RANK / WORLD_SIZE
shard the manifest (rank r takes items i with i % WORLD_SIZE == r) and each rank writes
`OUT.rank{r}`, then `OUT.rank{r}.done` when finished. Whichever rank finishes last (all `.done`
markers present) merges the shards into OUT, skipping pairs OUT already holds, and removes them.
A rerun with the same OUT resumes from OUT plus the rank's own shard.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data.schema import TASKS, AffectSample
from ..errors import ConfigError, MediaError, NanoEmoXError

PROTOCOLS = ("native", "unibench")
UNIBENCH_TASK = "ovmer"  # the [Recogn_OV] question


@dataclass
class PredictStats:
    target: Path
    written: int = 0
    skipped_done: int = 0
    bad: int = 0
    bad_items: list[str] = field(default_factory=list)
    merged: int | None = None


def done_pairs(path: Path) -> set[tuple[str, str]]:
    """(id, task) pairs already in a prediction file; a trailing partial line is ignored."""
    done: set[tuple[str, str]] = set()
    if not path.is_file():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and "id" in d and "task" in d:
                done.add((str(d["id"]), str(d["task"])))
    return done


def drop_partial_tail(path: Path) -> None:
    """Cut an interrupted last line (no newline) so appended lines start on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())


def plan(samples: Sequence[AffectSample], done: set[tuple[str, str]], tasks: Sequence[str] | None = None,
         protocol: str = "native") -> tuple[list[tuple[AffectSample, list[str]]], int]:
    """(sample, tasks still to answer) pairs and how many pairs were already done."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")
    todo, skipped = [], 0
    for s in samples:
        if protocol == "unibench":
            wanted = [UNIBENCH_TASK]
        else:
            wanted = [t for t in (tasks or s.tasks() or ["mer"]) if t in TASKS]
        left = [t for t in wanted if (s.id, t) not in done]
        skipped += len(wanted) - len(left)
        if left:
            todo.append((s, left))
    return todo, skipped


def predict_manifest(analyzer, manifest: str | os.PathLike | Sequence[AffectSample], out: str | os.PathLike, *,
                     tasks: Sequence[str] | None = None, protocol: str = "native", batch_size: int = 8,
                     limit: int | None = None, max_new_tokens: int | None = None, quiet: bool = True,
                     rank: int | None = None, world: int | None = None, **gen: Any) -> PredictStats:
    """Answer every sample of `manifest` into `out` (JSONL), batched and resumable.

    `analyzer` is an `Analyzer` or a zero-argument callable returning one (called only when
    there is something to answer). `gen`: do_sample, temperature, top_p, seed."""
    from ..data.schema import read_manifest

    if batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = out if world == 1 else out.with_name(f"{out.name}.rank{rank}")
    samples = list(manifest) if not isinstance(manifest, (str, os.PathLike)) else read_manifest(manifest)
    mine = [s for i, s in enumerate(samples[:limit]) if i % world == rank]
    drop_partial_tail(target)
    todo, skipped = plan(mine, done_pairs(out) | done_pairs(target), tasks, protocol)
    stats = PredictStats(target, skipped_done=skipped)
    if todo:
        model = analyzer() if callable(analyzer) and not hasattr(analyzer, "generate") else analyzer
        _run(model, todo, target, stats, batch_size, max_new_tokens, quiet, rank, world, gen)
    if world > 1:
        Path(f"{target}.done").write_text("ok\n")
        stats.merged = merge_shards(out, world)
    return stats


def _run(analyzer, todo, target: Path, stats: PredictStats, batch_size: int, max_new_tokens, quiet: bool,
         rank: int, world: int, gen: dict) -> None:
    from tqdm import tqdm

    from ..storage import append_line
    from .analyzer import Row
    from .parsing import parse_answer, prediction_line

    bar = tqdm(total=sum(len(ts) for _, ts in todo), desc="predict" + (f" [rank {rank}]" if world > 1 else ""),
               unit="answer", disable=quiet, file=sys.stderr, dynamic_ncols=True)

    def report_bad(sample_id: str, reason: str, n: int) -> None:
        stats.bad += 1
        stats.bad_items.append(f"{sample_id}: {reason}")
        bar.update(n)
        tqdm.write(f"skipped {sample_id}: {reason}", file=sys.stderr)

    def emit(rows: list) -> None:
        outs = analyzer.generate([r for _, r in rows], max_new_tokens, **gen)
        for (sid, row), (text, _) in zip(rows, outs):
            append_line(target, json.dumps(prediction_line(sid, parse_answer(row.task, text)), ensure_ascii=False))
            stats.written += 1
        bar.update(len(rows))

    for start in range(0, len(todo), batch_size):
        loaded = []
        for s, ts in todo[start : start + batch_size]:
            try:
                has_media = s.media_path() or s.frames is not None or s.waveform is not None
                media = analyzer.load_media(s.media_path(), frames=s.frames, waveform=s.waveform) if has_media else None
            except MediaError as e:
                report_bad(s.id, str(e), len(ts))
                continue
            loaded.append((s, ts, media))
        if not loaded:
            continue
        encoded = analyzer.encode([m for _, _, m in loaded])
        for task in TASKS:  # one generate call per task and batch: same answer budget per call
            rows = [(s.id, Row(enc, task, s.transcript, s.history, (s.candidates or {}).get(task)))
                    for (s, ts, _), enc in zip(loaded, encoded) if task in ts]
            for i in range(0, len(rows), batch_size):
                part = rows[i : i + batch_size]
                try:
                    emit(part)
                except NanoEmoXError:  # e.g. one prompt over max_length: find it, keep the rest
                    for one in part:
                        try:
                            emit([one])
                        except NanoEmoXError as e:
                            report_bad(one[0], f"{task}: {e}", 1)
    bar.close()


def merge_shards(out: Path, world: int) -> int | None:
    """Append every rank file's lines not yet in `out`, then remove the rank files. Runs only once
    all ranks are done, and in one process (an O_EXCL lock file); returns lines added or None."""
    from ..storage import append_line

    shards = [out.with_name(f"{out.name}.rank{r}") for r in range(world)]
    if not all(Path(f"{s}.done").is_file() for s in shards):
        return None
    lock = out.with_name(f".{out.name}.merge.lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None
    os.close(fd)
    try:
        if not all(Path(f"{s}.done").is_file() for s in shards):  # another rank merged meanwhile
            return None
        done = done_pairs(out)
        added = 0
        for shard in shards:
            if shard.is_file():
                with open(shard, encoding="utf-8") as f:
                    for line in f:
                        if not line.endswith("\n"):
                            break
                        d = json.loads(line)
                        key = (str(d["id"]), str(d["task"]))
                        if key not in done:
                            append_line(out, line)
                            done.add(key)
                            added += 1
        for shard in shards:
            shard.unlink(missing_ok=True)
            Path(f"{shard}.done").unlink(missing_ok=True)
        return added
    finally:
        lock.unlink(missing_ok=True)

