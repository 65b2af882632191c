"""`nanoemox analyze` (one clip, readable or JSON) and `nanoemox predict` (a manifest -> JSONL).

The prediction engine (batching, resuming, sharding over RANK / WORLD_SIZE, the unibench protocol)
lives in `inference.predict`; this module only parses arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..data.schema import TASKS
from ..errors import ConfigError, MediaError


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="answer the six affective tasks about one clip", description="Analyse one video / audio / image file.")
    p.add_argument("path", help="video, audio or image file")
    p.add_argument("--task", "--tasks", dest="tasks", action="append", metavar="T",
                   help=f"task(s): {' '.join(TASKS)} or all; repeat or comma-separate (default: mer)")
    p.add_argument("--transcript", help="what is said in the clip (the 'subtitle')")
    p.add_argument("--history", help='earlier dialogue turns as JSON: [{"speaker": "...", "text": "..."}]')
    p.add_argument("--asr", action="store_true", help="transcribe the speech with Whisper tiny.en when no --transcript is given")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="int8: weight-only int8 language model (CPU only)")
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
    q.add_argument("--protocol", choices=("native", "unibench"), default="native",
                   help="native: each sample's own tasks; unibench: ask every sample the open-vocabulary "
                   "[Recogn_OV] question (MER-UniBench's zero-shot protocol, for MER / MSA / OV manifests)")
    q.add_argument("--quantize", choices=("int8",), default=None,
                   help="int8: weight-only int8 language model (CPU only)")
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
    analyzer = _load_analyzer(args, **({"quantize": args.quantize} if args.quantize else {}))
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
def run_predict(args) -> int:
    from .predict import predict_manifest

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    tasks = None
    if args.tasks:
        from .analyzer import resolve_tasks

        tasks = resolve_tasks(args.tasks)
    extra = {"quantize": args.quantize} if args.quantize else {}
    stats = predict_manifest(
        lambda: _load_analyzer(args, **extra), args.manifest, args.out, tasks=tasks, protocol=args.protocol,
        batch_size=args.batch_size, limit=args.limit, max_new_tokens=args.max_new_tokens, quiet=args.quiet,
        rank=rank, world=world, do_sample=args.sample, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
    )
    print(f"predict: {stats.written} new answer(s) -> {stats.target}, {stats.skipped_done} already done, "
          f"{stats.bad} bad item(s) skipped", file=sys.stderr)
    if stats.merged is not None:
        print(f"predict: merged {world} rank files into {args.out} ({stats.merged} new line(s))", file=sys.stderr)
    return 0
