"""The paper's tables on the command line:

- `nanoemox evaluate unibench --data DIR --pred DIR --extractor ... --out DIR`  (Table 2)
- `nanoemox evaluate avamerg (--responses CSV | --pred P --manifest M) [--out DIR] [--json]` (Table 5)
- `nanoemox evaluate hitrate --labels CSV [--wheel-dir DIR] --json`   (name,gt,pred)
- `nanoemox evaluate sentiment --labels CSV --json`                    (name,gt_score,pred_label)
- `nanoemox evaluate mintrec --labels CSV --json`                      (name,gt,pred)
- `nanoemox benchmark unibench --model DIR --data DIR --extractor ... --out DIR` (predict + extract + score)

JSON outputs of the three small commands are stable contracts (fractions, except avamerg on the
paper's x100 scale).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runner import read_csv_columns


def extractor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extractor", choices=("openai", "hf", "lexicon"), required=True,
                   help="answer -> emotion list -> sentiment: an OpenAI-compatible LLM endpoint (the paper: "
                   "Qwen2.5-7B-Instruct via vLLM), a local HF causal LM folder, or the offline lexicon proxy")
    p.add_argument("--llm-url", help="openai: base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--llm-model", default="default", help="openai: model name sent to the endpoint")
    p.add_argument("--api-key", help="openai: bearer token")
    p.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight (default 8)")
    p.add_argument("--retries", type=int, default=3, help="openai: tries per request, with backoff (default 3)")
    p.add_argument("--hf-model", metavar="DIR", help="hf: a local causal-LM folder (config.json + weights + tokenizer)")
    p.add_argument("--cache", metavar="DIR", help="extraction cache folder (default ~/.cache/nanoemox/extraction)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the extraction cache")


def build_extractor(args, ws):
    from .extractors import default_cache_dir, make_extractor

    cache = None if args.no_cache else (args.cache or default_cache_dir())
    return make_extractor(args.extractor, cache_dir=cache, ws=ws, base_url=args.llm_url, model=args.llm_model,
                          api_key=args.api_key, hf_model=args.hf_model, concurrency=args.concurrency, retries=args.retries)


def register_paper(sub, wheel_help: str) -> None:
    u = sub.add_parser("unibench", help="MER-UniBench Table 2 from nine prediction files (markdown, JSON, HTML)")
    u.add_argument("--data", required=True, metavar="DIR", help="manifests named mer2023.jsonl ... ovmerd.jsonl")
    u.add_argument("--pred", required=True, metavar="DIR", help="prediction files with the same names (predict --protocol unibench)")
    u.add_argument("--out", required=True, metavar="DIR", help="report folder (table.md, metrics.json, index.html)")
    u.add_argument("--name", default="ours", help="row label for this checkpoint")
    u.add_argument("--wheel-dir", help=wheel_help)
    u.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    extractor_args(u)
    u.set_defaults(func=_unibench)

    a = sub.add_parser("avamerg", help="AvaMERG Table 5 (last turns; accuracy, hit rate, Dist-1/2 x100)")
    a.add_argument("--responses", metavar="CSV", help="name,gt,response (response = the whole answer with its <think> block)")
    a.add_argument("--pred", metavar="PREDS.jsonl", help="ERG predictions (instead of --responses)")
    a.add_argument("--manifest", metavar="GOLD.jsonl", help="the AvaMERG manifest (with --pred)")
    a.add_argument("--out", metavar="DIR", help="also write the report folder")
    a.add_argument("--name", default="ours")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=_avamerg)

    h = sub.add_parser("hitrate", help="MER hit rate of a name,gt,pred CSV (5 wheels, level 1)")
    h.add_argument("--labels", required=True, metavar="CSV")
    h.add_argument("--wheel-dir", help=wheel_help)
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=_hitrate)

    s = sub.add_parser("sentiment", help="the paper's MSA WAF of a name,gt_score,pred_label CSV")
    s.add_argument("--labels", required=True, metavar="CSV")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_sentiment)

    e = sub.add_parser("emer", help="EMER rationales: LLM judge (clue / emotion overlap 1-10, T=0) + wheel-F complement")
    e.add_argument("root", metavar="DIR", help="prediction CSVs (names, chi_reasons|reasons) with gt-eng.csv beside them")
    e.add_argument("--judge-url", help="OpenAI-compatible endpoint of the judge (omit for the wheel-F complement only)")
    e.add_argument("--judge-model", default="default")
    e.add_argument("--wheel-dir", help=wheel_help)
    e.add_argument("--json", action="store_true")
    extractor_args(e)
    e.set_defaults(func=_emer)

    m = sub.add_parser("mintrec", help="MIntRec ACC / WF1 / WP with exact string match of a name,gt,pred CSV")
    m.add_argument("--labels", required=True, metavar="CSV")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_mintrec)


def _emit(args, res: dict, text: str) -> int:
    print(json.dumps(res) if args.json else text, end="" if not args.json else "\n")
    return 0


def _hitrate(args) -> int:
    from .paper import unibench_hit_rate
    from .wheel import load_wheels

    _, gold, pred = read_csv_columns(args.labels, ("name", "gt", "pred"))
    r = unibench_hit_rate(gold, pred, load_wheels(args.wheel_dir))
    res = {"hit_rate": r["hit_rate"], "n": r["n"], "n_scored": r["n_scored"], "per_wheel": r["per_wheel"], "wheel_source": r["wheel_source"]}
    return _emit(args, res, f"hit rate {100 * r['hit_rate']:.2f} over {r['n']} samples (5 wheels, level 1)\n")


def _sentiment(args) -> int:
    from ..errors import DataError
    from .paper import paper_waf

    names, gold, pred = read_csv_columns(args.labels, ("name", "gt_score", "pred_label"))
    scores = []
    for row, (n, g) in enumerate(zip(names, gold), start=2):
        try:
            v = float(g)
        except ValueError:
            v = float("nan")
        if v != v:
            raise DataError(f"{args.labels}:line {row} ({n}): gt_score {g!r} is not a number")
        scores.append(v)
    r = paper_waf(scores, pred)
    return _emit(args, r, f"WAF {100 * r['waf']:.2f}  accuracy {100 * r['accuracy']:.2f}  ({r['n_scored']} scored, {r['n_gold_zero']} gold 0 dropped)\n")


def _emer(args) -> int:
    from ..errors import DataError
    from .emer import judge_rationales, rationale_wheel_f
    from .extractors import OpenAIExtractor
    from .wheel import load_wheels

    root = Path(args.root)
    files = sorted(p for p in root.rglob("*.csv") if p.name not in ("gt-eng.csv", "gt.csv")) if root.is_dir() else []
    if not files:
        raise DataError(f"{root}: no prediction CSVs (with gt-eng.csv beside them) found")
    ws = load_wheels(args.wheel_dir)
    ext = build_extractor(args, ws)
    judge = OpenAIExtractor(base_url=args.judge_url, model=args.judge_model, max_tokens=16) if args.judge_url else None
    rows = []
    for f in files:
        names, refs = read_csv_columns(f.parent / "gt-eng.csv", ("names", "reasons"))
        read_csv_columns(f, ("names",))  # a clear error when the column is missing
        import pandas as pd

        pr = pd.read_csv(f, dtype=str, keep_default_na=False)
        col = "chi_reasons" if "chi_reasons" in pr.columns else "reasons" if "reasons" in pr.columns else None
        if col is None:
            raise DataError(f"{f}: no chi_reasons / reasons column")
        pmap = dict(zip(pr["names"], pr[col]))
        preds = [pmap.get(n, "") for n in names]
        row = {"file": str(f.relative_to(root)), "n": len(names), "n_no_prediction": sum(n not in pmap for n in names)}
        w = rationale_wheel_f(ext, preds, refs, ws)
        row.update(wheel_f=w["f"], wheel_n_missing=w["n_missing"])
        if judge is not None:
            j = judge_rationales(judge, preds, refs)
            row.update(judge_clue=j["clue"], judge_emotion=j["emotion"], judge_clue_missing=j["n_clue_missing"],
                       judge_emotion_missing=j["n_emotion_missing"])
        rows.append(row)
    head = "| file | n | judge clue (1-10) | judge emotion (1-10) | wheel F (x100) |\n|---|---|---|---|---|\n"
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    body = "".join(f"| {r['file']} | {r['n']} | {fmt(r.get('judge_clue'))} | {fmt(r.get('judge_emotion'))} | {100 * r['wheel_f']:.2f} |\n" for r in rows)
    note = f"\nExtractor: {ext.identity}" + (" (offline proxy, not the paper's LLM)" if ext.is_proxy else "") + ".\n"
    return _emit(args, {"rows": rows, "extractor": ext.identity}, head + body + note)


def _mintrec(args) -> int:
    from .paper import mintrec_scores

    _, gold, pred = read_csv_columns(args.labels, ("name", "gt", "pred"))
    r = mintrec_scores(gold, pred)
    return _emit(args, r, f"ACC {100 * r['accuracy']:.2f}  WF1 {100 * r['weighted_f1']:.2f}  WP {100 * r['weighted_precision']:.2f}  (n={r['n']})\n")


def _avamerg(args) -> int:
    from ..errors import ConfigError
    from .paper import avamerg_scores
    from .unibench import avamerg_from_predictions, avamerg_markdown

    if args.responses:
        _, gold, resp = read_csv_columns(args.responses, ("name", "gt", "response"))
        res = avamerg_scores(gold, resp)
    elif args.pred and args.manifest:
        from ..data.schema import read_manifest
        from .runner import read_predictions

        res = avamerg_from_predictions(read_predictions(args.pred), read_manifest(args.manifest, resolve_media=False))
    else:
        raise ConfigError("evaluate avamerg needs --responses CSV, or --pred and --manifest")
    table = avamerg_markdown(res, args.name)
    if args.out:
        from .paper_report import write_avamerg_report

        write_avamerg_report(args.out, res, table, args.name)
    out = {k: v for k, v in res.items() if k != "predicted"}
    return _emit(args, out, table)


def _unibench(args) -> int:
    from .paper_report import write_unibench_report
    from .unibench import score_unibench, unibench_markdown
    from .wheel import load_wheels

    ws = load_wheels(args.wheel_dir)
    ext = build_extractor(args, ws)
    res = score_unibench(args.data, args.pred, ext, ws, model=args.name)
    table = unibench_markdown(res)
    write_unibench_report(args.out, res, table)
    _emit(args, res, table)
    print(f"report: {Path(args.out) / 'index.html'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# nanoemox benchmark unibench
# ---------------------------------------------------------------------------------------------
def register_benchmark(subparsers) -> None:
    p = subparsers.add_parser("benchmark", help="run a paper benchmark end to end (predict, extract, score)")
    sub = p.add_subparsers(dest="bench_command", metavar="WHAT")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    u = sub.add_parser("unibench", help="MER-UniBench: predict --protocol unibench on each manifest, extract, Table 2")
    g = u.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a trained model folder")
    g.add_argument("--preset", choices=("tiny", "small", "paper"), help="an untrained preset (smoke tests)")
    u.add_argument("--device")
    u.add_argument("--data", required=True, metavar="DIR", help="manifests mer2023.jsonl ... ovmerd.jsonl (absent ones are reported missing)")
    u.add_argument("--out", required=True, metavar="DIR", help="predictions in DIR/predictions, report in DIR/report")
    u.add_argument("--batch-size", type=int, default=8)
    u.add_argument("--max-new-tokens", type=int, default=None)
    u.add_argument("--limit", type=int, default=None, help="only the first N samples of each manifest")
    u.add_argument("--name", default=None, help="row label (default: the model folder or preset name)")
    u.add_argument("--wheel-dir")
    extractor_args(u)
    u.set_defaults(func=_bench_unibench)


def _bench_unibench(args) -> int:
    from ..inference.predict import predict_manifest
    from .paper_report import write_unibench_report
    from .unibench import DATASETS, score_unibench, unibench_markdown
    from .wheel import load_wheels

    ws = load_wheels(args.wheel_dir)
    ext = build_extractor(args, ws)  # fail on a bad extractor before spending time on prediction
    if hasattr(ext, "check"):
        ext.check()
    data, out = Path(args.data), Path(args.out)
    present = [k for k, _, _ in DATASETS if (data / f"{k}.jsonl").is_file()]
    if not present:
        from ..errors import DataError

        raise DataError(f"{data}: none of the nine manifests ({', '.join(k + '.jsonl' for k, _, _ in DATASETS)})")
    holder: dict = {}

    def analyzer():
        if "a" not in holder:
            from ..inference.analyzer import Analyzer

            holder["a"] = Analyzer.load(model=args.model, preset=args.preset, device=args.device)
        return holder["a"]

    for key in present:
        st = predict_manifest(analyzer, data / f"{key}.jsonl", out / "predictions" / f"{key}.jsonl", protocol="unibench",
                              batch_size=args.batch_size, limit=args.limit, max_new_tokens=args.max_new_tokens, rank=0, world=1)
        print(f"{key}: {st.written} new answer(s), {st.skipped_done} already done, {st.bad} bad item(s)", file=sys.stderr)
    name = args.name or (Path(args.model).name if args.model else f"preset {args.preset}")
    res = score_unibench(data, out / "predictions", ext, ws, model=name, limit=args.limit)
    table = unibench_markdown(res)
    write_unibench_report(out / "report", res, table)
    print(table, end="")
    print(f"report: {out / 'report' / 'index.html'}", file=sys.stderr)
    return 0
