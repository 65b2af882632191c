"""`nanoemox analyze` (one clip, readable or JSON) and `nanoemox predict` (a manifest -> JSONL).

Prediction files: one JSON object per (id, task) line (see parsing.PREDICTION_FIELDS), appended
with one write + fsync each, so an interrupted run leaves only whole lines and a rerun skips the
(id, task) pairs already written.

Several processes (`torchrun --nproc-per-node N -m nanoemox.cli predict ...` or
`accelerate launch -m nanoemox.cli predict ...`): the RANK / WORLD_SIZE environment variables shard
the manifest (rank r takes items i with i % WORLD_SIZE == r) and each rank writes
`OUT.rank{r}`, then `OUT.rank{r}.done` when finished. Whichever rank finishes last (all `.done`
markers present) merges the shards into OUT, skipping pairs OUT already holds, and removes them.
A rerun with the same OUT resumes from OUT plus the rank's own shard.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..data.schema import TASKS
from ..errors import ConfigError, MediaError, NanoEmoXError


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="answer the six affective tasks about one clip", description="Analyse one video / audio / image file.")
    p.add_argument("path", help="video, audio or image file")
    p.add_argument("--task", "--tasks", dest="tasks", action="append", metavar="T",
                   help=f"task(s): {' '.join(TASKS)} or all; repeat or comma-separate (default: mer)")
    p.add_argument("--transcript", help="what is said in the clip (the 'subtitle')")
    p.add_argument("--history", help='earlier dialogue turns as JSON: [{"speaker": "...", "text": "..."}]')
    p.add_argument("--asr", action="store_true", help="transcribe the speech with Whisper tiny.en when no --transcript is given")
    _model_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _decoding_args(p)
    p.set_defaults(func=run_analyze)

    q = subparsers.add_parser("predict", help="answer every sample of a manifest into a JSONL prediction file",
                              description="Batched, resumable prediction over a manifest (see `nanoemox evaluate`).")
    q.add_argument("manifest", help="JSONL manifest of samples")
    _model_args(q)
    q.add_argument("--out", required=True, help="prediction file (JSONL); existing (id, task) lines are kept and skipped")
    q.add_argument("--tasks", action="append", metavar="T", help="tasks to answer (default: each sample's own tasks)")
    q.add_argument("--batch-size", type=int, default=8, help="samples per encoder call and rows per generate call (default 8)")
    q.add_argument("--limit", type=int, default=None, help="only the first N samples of the manifest")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    _decoding_args(q)
    q.set_defaults(func=run_predict)


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="a trained model folder (or a `nanoemox train` output dir); default: the demo model")
    g.add_argument("--preset", choices=("tiny", "small", "paper"), help="an untrained preset model (fixed seed), e.g. tiny for a smoke test")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")


def _decoding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap in tokens (default: per task)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (with --sample)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (with --sample)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def _load_analyzer(args, **kwargs: Any):
    from .analyzer import Analyzer

    device = args.device
    if device is None and os.environ.get("LOCAL_RANK") is not None:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return Analyzer.load(model=args.model, preset=args.preset, device=device, **kwargs)


# ---------------------------------------------------------------------------------------- analyze
def run_analyze(args) -> int:
    from .analyzer import resolve_tasks

    tasks = resolve_tasks(args.tasks)
    history = _parse_history(args.history)
    if not Path(args.path).exists():
        raise MediaError(args.path, "file not found")
    analyzer = _load_analyzer(args)
    result = analyzer.analyze(
        args.path, transcript=args.transcript, history=history, tasks=tasks, max_new_tokens=args.max_new_tokens,
        do_sample=args.sample, temperature=args.temperature, top_p=args.top_p, seed=args.seed, asr=args.asr,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_result(result)
    return 0


def _parse_history(text: str | None) -> list[dict[str, str]]:
    if not text:
        return []
    try:
        hist = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--history is not valid JSON ({e.msg})") from None
    if not isinstance(hist, list) or not all(isinstance(h, dict) and "text" in h for h in hist):
        raise ConfigError('--history must be a JSON list of {"speaker": ..., "text": ...} objects')
    return [{"speaker": str(h.get("speaker") or "Speaker"), "text": str(h["text"])} for h in hist]


def _answer_summary(r) -> str:
    if r.task == "msa" and r.label:
        return r.label + ("" if r.score is None else f" ({r.score:+.1f})")
    if r.task == "ovmer" and r.labels:
        return ", ".join(r.labels)
    if r.task == "erg":
        return (r.emotion + ": " if r.emotion else "") + (r.reply or "")
    if r.task == "eri":
        return (r.emotion or "") if r.emotion else ""
    return r.label or ""


def _print_result(result) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    media = result.media or {}
    con.print(f"[bold]{escape(str(media.get('path') or 'text only'))}[/bold]  model={escape(result.model)}  "
              f"modalities={','.join(result.modalities) or 'text'}  duration={media.get('duration_s')} s")
    if result.transcript:
        con.print(f"transcript ({result.transcript_source}): {escape(result.transcript)}")
    for w in result.warnings:
        con.print(f"[yellow]warning:[/yellow] {escape(w)}")
    table = Table(show_lines=True)
    table.add_column("task", style="bold")
    table.add_column("answer")
    table.add_column("raw output", overflow="fold")
    for task, r in result.results.items():
        answer = escape(_answer_summary(r)) if not r.parse_error else f"[red]parse error:[/red] {escape(r.parse_error)}"
        if r.reason and task == "eri":
            answer += "\n" + escape(r.reason)
        if r.think:
            answer += "\n[dim]" + escape(r.think) + "[/dim]"
        table.add_row(task, answer, escape(r.raw))
    con.print(table)
    if result.gate is not None:
        con.print("fusion gate: " + "  ".join(f"expert{i}={g:.3f}" for i, g in enumerate(result.gate)))
    con.print("timings: " + "  ".join(f"{k}={v:.3f}" for k, v in result.timings.items()))


# ---------------------------------------------------------------------------------------- predict
def _done_pairs(path: Path) -> set[tuple[str, str]]:
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


def _drop_partial_tail(path: Path) -> None:
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


def run_predict(args) -> int:
    from ..data.schema import read_manifest
    from ..storage import append_line
    from .analyzer import Row, resolve_tasks
    from .parsing import parse_answer, prediction_line

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = out if world == 1 else out.with_name(f"{out.name}.rank{rank}")
    samples = read_manifest(args.manifest)[: args.limit]
    mine = [s for i, s in enumerate(samples) if i % world == rank]
    task_filter = resolve_tasks(args.tasks) if args.tasks else None
    _drop_partial_tail(target)
    done = _done_pairs(out) | _done_pairs(target)
    todo = []
    skipped_done = 0
    for s in mine:
        wanted = [t for t in (task_filter or s.tasks() or ["mer"]) if t in TASKS]
        left = [t for t in wanted if (s.id, t) not in done]
        skipped_done += len(wanted) - len(left)
        if left:
            todo.append((s, left))

    analyzer = _load_analyzer(args)
    from tqdm import tqdm

    bar = tqdm(total=sum(len(ts) for _, ts in todo), desc="predict" + (f" [rank {rank}]" if world > 1 else ""),
               unit="answer", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    gen = dict(do_sample=args.sample, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    written = bad = 0

    def report_bad(sample_id: str, reason: str, n: int) -> None:
        nonlocal bad
        bad += 1
        bar.update(n)
        tqdm.write(f"skipped {sample_id}: {reason}", file=sys.stderr)

    def emit(rows: list[tuple[str, Row]]) -> None:
        nonlocal written
        outs = analyzer.generate([r for _, r in rows], args.max_new_tokens, **gen)
        for (sid, row), (text, _) in zip(rows, outs):
            append_line(target, json.dumps(prediction_line(sid, parse_answer(row.task, text)), ensure_ascii=False))
            written += 1
        bar.update(len(rows))

    for start in range(0, len(todo), args.batch_size):
        chunk = todo[start : start + args.batch_size]
        loaded = []
        for s, ts in chunk:
            try:
                media = analyzer.load_media(s.media_path(), frames=s.frames, waveform=s.waveform) if (s.media_path() or s.frames is not None or s.waveform is not None) else None
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
            for i in range(0, len(rows), args.batch_size):
                part = rows[i : i + args.batch_size]
                try:
                    emit(part)
                except NanoEmoXError:  # e.g. one prompt over max_length: find it, keep the rest
                    for one in part:
                        try:
                            emit([one])
                        except NanoEmoXError as e:
                            report_bad(one[0], f"{task}: {e}", 1)
    bar.close()
    note = f"predict: {written} new answer(s) -> {target}, {skipped_done} already done, {bad} bad item(s) skipped"
    print(note, file=sys.stderr)
    if world > 1:
        Path(f"{target}.done").write_text("ok\n")
        merged = _merge_shards(out, world)
        if merged is not None:
            print(f"predict: merged {world} rank files into {out} ({merged} new line(s))", file=sys.stderr)
    return 0


def _merge_shards(out: Path, world: int) -> int | None:
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
        done = _done_pairs(out)
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
