"""Evaluation reports: metrics.json, a markdown table and a self-contained index.html whose plots
(matplotlib, Agg) are embedded as base64 PNGs. The whole folder is written atomically."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

from ..data.schema import TASKS
from ..storage import atomic_path
from .runner import HEADLINE

# Headline numbers of the paper (spec section 3; real benchmarks, percentages). They are context
# rows only: a run on another corpus (e.g. the synthetic one) is not comparable to them.
PAPER_ROWS = [
    {"model": "Nano-EmoX (P2E), paper", "benchmark": "MER-UniBench 9-dataset mean", "value": 74.01},
    {"model": "Nano-EmoX (joint, no curriculum), paper", "benchmark": "MER-UniBench 9-dataset mean", "value": 73.28},
    {"model": "AffectGPT 8.3B, paper", "benchmark": "MER-UniBench 9-dataset mean", "value": 74.77},
    {"model": "Nano-EmoX (P2E), paper", "benchmark": "AvaMERG ERG emotion accuracy", "value": 54.82},
    {"model": "Nano-EmoX (P2E), paper", "benchmark": "AvaMERG ERG emotion hit rate", "value": 91.13},
    {"model": "Nano-EmoX (joint), paper", "benchmark": "AvaMERG ERG emotion accuracy", "value": 34.91},
    {"model": "Nano-EmoX (joint), paper", "benchmark": "AvaMERG ERG emotion hit rate", "value": 74.79},
]

# Scalar metrics shown in the table per task (others stay in metrics.json).
# The paper's metric comes first (marked "(paper)" in the table); the rest are nanoemox extras.
TABLE_METRICS = {
    "msa": ("paper_waf", "paper_accuracy", "waf", "accuracy", "mae", "corr"),
    "mer": ("hit_rate", "accuracy", "waf"),
    "ovmer": ("wheel_f", "wheel_precision", "wheel_recall", "wheel_free_f", "wheel_f_level2"),
    "eri": ("rationale_wheel_f", "judge_clue", "judge_emotion", "clue_recall", "clue_precision", "emotion_accuracy", "emotion_hit_rate"),
    "mir": ("exact_accuracy", "exact_weighted_f1", "exact_weighted_precision", "accuracy", "weighted_f1", "tolerant_accuracy"),
    "erg": ("paper_accuracy", "paper_hit_rate", "paper_dist1", "paper_dist2", "emotion_accuracy", "emotion_hit_rate",
            "dist2_corpus", "bleu", "rouge_l"),
}
PAPER_METRICS = {"msa": {"paper_waf", "paper_accuracy"}, "mer": {"hit_rate"}, "ovmer": {"wheel_f"},
                 "eri": {"rationale_wheel_f", "judge_clue", "judge_emotion"},
                 "mir": {"exact_accuracy", "exact_weighted_f1", "exact_weighted_precision"},
                 "erg": {"paper_accuracy", "paper_hit_rate", "paper_dist1", "paper_dist2"}}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown_table(names: Sequence[str], results: Sequence[Mapping], aggregate: Mapping | None = None,
                   paper: bool = True) -> str:
    multi = len(results) > 1
    head = ["task", "metric", *names] + (["mean ± std"] if multi else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in TASKS:
        if not any(t in r for r in results):
            continue
        for m in TABLE_METRICS[t]:
            vals = [r.get(t, {}).get(m) for r in results]
            if all(v is None for v in vals):
                continue
            label = f"{m} (paper)" if m in PAPER_METRICS[t] else f"{m} (extra)"
            row = [t, label, *(_fmt(v) for v in vals)]
            if multi:
                a = (aggregate or {}).get(t, {}).get(m)
                row.append(f"{a['mean']:.4f} ± {a['std']:.4f}" if a else "-")
            lines.append("| " + " | ".join(row) + " |")
        counts = [f"n={r[t]['n']} missing={r[t]['missing']}" if t in r else "-" for r in results]
        lines.append("| " + " | ".join([t, "samples", *counts] + (["" ] if multi else [])) + " |")
    out = "\n".join(lines) + "\n"
    if paper:
        out += "\nPaper headline numbers (real benchmarks; context only, not comparable to other corpora):\n\n"
        out += "| model | benchmark | value |\n|---|---|---|\n"
        out += "".join(f"| {r['model']} | {r['benchmark']} | {r['value']:.2f} |\n" for r in PAPER_ROWS)
    return out


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(names: Sequence[str], results: Sequence[Mapping], aggregate: Mapping | None) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figs: list[tuple[str, str]] = []
    tasks = [t for t in TASKS if any(t in r for r in results)]
    if tasks:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        vals = [[r[t]["headline"]["value"] if t in r else 0.0 for t in tasks] for r in results]
        mean = np.mean(vals, axis=0)
        err = np.std(vals, axis=0, ddof=1) if len(vals) > 1 else None
        ax.bar(range(len(tasks)), mean, yerr=err, capsize=4, color="#4c78a8")
        ax.set_xticks(range(len(tasks)), [f"{t}\n{HEADLINE[t]}" for t in tasks], fontsize=8)
        ax.set_ylim(0, max(1.0, float(np.max(mean)) * 1.1))
        ax.set_title("headline metric per task" + (f" (mean ± std over {len(vals)} checkpoints)" if err is not None else ""))
        figs.append(("Per-task headline metrics", _png(fig)))
    last = results[-1] if results else {}
    for t in ("mer", "mir"):
        conf = last.get(t, {}).get("confusion")
        if conf and conf["labels"]:
            m = np.asarray(conf["matrix"], dtype=float)
            size = max(4.0, 0.35 * len(conf["columns"]) + 2)
            fig, ax = plt.subplots(figsize=(size, size * 0.85))
            ax.imshow(m, cmap="Blues")
            ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=90, fontsize=7)
            ax.set_yticks(range(len(conf["labels"])), conf["labels"], fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("gold")
            if m.size <= 100:
                for (i, j), v in np.ndenumerate(m):
                    if v:
                        ax.text(j, i, int(v), ha="center", va="center", fontsize=7)
            ax.set_title(f"{t.upper()} confusion matrix ({names[-1] if names else ''})")
            figs.append((f"{t.upper()} confusion matrix", _png(fig)))
    pw = last.get("ovmer", {}).get("per_wheel")
    if pw:
        fig, ax = plt.subplots(figsize=(6, 3))
        keys = list(pw)
        x = np.arange(len(keys))
        for k, (metric, color) in enumerate((("precision", "#4c78a8"), ("recall", "#f58518"), ("f", "#54a24b"))):
            ax.bar(x + (k - 1) * 0.27, [pw[w][metric] for w in keys], width=0.27, label=metric, color=color)
        ax.set_xticks(x, keys)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.set_title("OV-MER per-wheel scores (level1)")
        figs.append(("OV-MER per-wheel scores", _png(fig)))
    return figs


def write_report(out_dir, names: Sequence[str], results: Sequence[Mapping], *, aggregate: Mapping | None = None,
                 meta: Mapping | None = None, paper: bool = True) -> Path:
    """Write metrics.json, metrics.md and index.html into `out_dir` (replaced atomically)."""
    out_dir = Path(out_dir)
    doc = {"checkpoints": list(names), "per_checkpoint": {n: r for n, r in zip(names, results)},
           "aggregate": aggregate, "meta": dict(meta or {}), "paper": PAPER_ROWS if paper else None}
    table = markdown_table(names, results, aggregate, paper)
    figs = _plots(names, results, aggregate)
    body = [f"<h1>nanoemox evaluation</h1><p>{html.escape(', '.join(names))}</p>",
            "<pre>" + html.escape(table) + "</pre>"]
    for title, b64 in figs:
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>nanoemox evaluation</title>"
            "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em}</style>"
            "</head><body>" + "\n".join(body) + "</body></html>\n")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        (tmp / "metrics.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        (tmp / "metrics.md").write_text(table, encoding="utf-8")
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return out_dir
