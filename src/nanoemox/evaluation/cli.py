"""`nanoemox evaluate {run,ovmer,eri-files,benchmark}` and the paper's tables
(`unibench`, `avamerg`, `hitrate`, `sentiment`, `mintrec`: see paper_cli.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score predictions (all six tasks, MER-UniBench wheel metrics)")
    sub = p.add_subparsers(dest="eval_command", metavar="WHAT")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    wheel_help = "MER-UniBench emotion_wheel folder (format.csv, synonym.xlsx, wheel1..5.xlsx); default $NANOEMOX_WHEEL_DIR"

    r = sub.add_parser("run", help="score prediction JSONL file(s) against a gold manifest and write a report")
    r.add_argument("--pred", action="append", required=True, metavar="PREDS.jsonl",
                   help="predictions; repeat once per checkpoint to report mean and spread")
    r.add_argument("--manifest", required=True, metavar="GOLD.jsonl")
    r.add_argument("--wheel-dir", help=wheel_help)
    r.add_argument("--out", required=True, metavar="DIR", help="report folder (metrics.json, metrics.md, index.html)")
    _extractor_args(r)
    r.add_argument("--judge", action="store_true", help="also score ERI with the LLM judge at --llm-url")
    r.add_argument("--judge-missing-ok", action="store_true",
                   help="record failed judge calls as missing (counted) instead of stopping")
    r.add_argument("--no-paper", action="store_true", help="leave out the paper's headline rows")
    r.set_defaults(func=_run)

    o = sub.add_parser("ovmer", help="MER-UniBench OV-MER wheel F/P/R of a name,gt,pred CSV")
    o.add_argument("--labels", required=True, metavar="FILE.csv")
    o.add_argument("--wheel-dir", help=wheel_help)
    o.add_argument("--level", choices=("level1", "level2"), default="level1")
    o.add_argument("--json", action="store_true", help="print JSON with per-wheel precision/recall")
    o.set_defaults(func=_ovmer)

    e = sub.add_parser("eri-files", help="score EMER rationale CSVs (e.g. refdata/ov-merd-eval) with extraction + wheel F/P/R")
    e.add_argument("root", metavar="DIR", help="folder with prediction CSVs and gt-eng.csv beside them")
    e.add_argument("--wheel-dir", help=wheel_help)
    _extractor_args(e)
    e.add_argument("--out", metavar="FILE", help="also write the table (.md) or rows (.json)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eri_files)

    b = sub.add_parser("benchmark", help="time the wheel metric on synthetic samples")
    b.add_argument("-n", type=int, default=10000)
    b.add_argument("--wheel-dir", help=wheel_help)
    b.set_defaults(func=_benchmark)

    from .paper_cli import register_paper

    register_paper(sub, wheel_help)


def _extractor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extractor", choices=("lexicon", "llm"), default="lexicon",
                   help="free text -> emotion words: deterministic lexicon (default) or an LLM at --llm-url")
    p.add_argument("--llm-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--llm-model", default="default")


def _extractor(args, ws):
    from .extract import make_extractor

    return make_extractor(args.extractor, ws=ws, base_url=args.llm_url, model=args.llm_model)


def _run(args) -> int:
    from ..data.schema import read_manifest
    from ..errors import ConfigError
    from .extract import ChatClient, LLMJudge
    from .report import write_report
    from .runner import aggregate_checkpoints, evaluate_predictions, read_predictions
    from .wheel import load_wheels

    gold = read_manifest(args.manifest, resolve_media=False)
    ws = load_wheels(args.wheel_dir)
    ext = _extractor(args, ws)
    judge = None
    if args.judge:
        if not args.llm_url:
            raise ConfigError("--judge needs --llm-url")
        judge = LLMJudge(ChatClient(args.llm_url, model=args.llm_model), on_error="missing" if args.judge_missing_ok else "raise")
    names, results = [], []
    for path in args.pred:
        names.append(_unique(Path(path).stem, names))
        results.append(evaluate_predictions(read_predictions(path), gold, ws=ws, extractor=ext, judge=judge))
    agg = aggregate_checkpoints(results) if len(results) > 1 else None
    meta = {"manifest": str(args.manifest), "pred": list(args.pred), "wheel_source": ws.source, "extractor": getattr(ext, "name", "")}
    write_report(args.out, names, results, aggregate=agg, meta=meta, paper=not args.no_paper)
    from .report import markdown_table

    print(markdown_table(names, results, agg, paper=False), end="")
    print(f"report: {Path(args.out) / 'index.html'}")
    return 0


def _unique(name: str, taken: list[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}#{k}", k + 1
    return out


def _ovmer(args) -> int:
    from .runner import score_ovmer_csv

    res = score_ovmer_csv(args.labels, args.wheel_dir, args.level)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"F {res['f']:.6f}  precision {res['precision']:.6f}  recall {res['recall']:.6f}  (mean over {len(res['per_wheel'])} wheels, {args.level})")
    return 0


def _eri_files(args) -> int:
    from ..storage import atomic_write_json, atomic_write_text
    from .runner import score_eri_files
    from .wheel import load_wheels

    ws = load_wheels(args.wheel_dir)
    rows = score_eri_files(args.root, args.wheel_dir, _extractor(args, ws))
    table = eri_table(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table, end="")
    if args.out and args.out.endswith(".json"):
        atomic_write_json(args.out, rows)
    elif args.out:
        atomic_write_text(args.out, table)
    return 0


def eri_table(rows) -> str:
    head = "| model | file | F | precision | recall | F (level2) | hit rate | n | missing |\n|---|---|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['model']} | {Path(r['file']).name} | {r['f']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
        f"{r['f_level2']:.4f} | {r['hit_rate']:.4f} | {r['n']} | {r['missing']} |\n" for r in rows)
    src = rows[0]["wheel_source"] if rows else ""
    return head + body + f"\nextractor: {rows[0]['extractor'] if rows else ''}; wheels: {src}\n"


def _benchmark(args) -> int:
    from .wheel import benchmark_wheel

    print(json.dumps(benchmark_wheel(args.n, args.wheel_dir), indent=2))
    return 0
