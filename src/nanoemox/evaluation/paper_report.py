"""Table 2 / Table 5 report folders: table.md, metrics.json and a self-contained index.html with
one bar chart per column (ours beside the paper's rows). The folder is replaced atomically."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Mapping, Sequence

from ..storage import atomic_path
from .paper import PAPER_TABLE2, PAPER_TABLE5, UNIBENCH_COLUMNS
from .report import _png

_COLORS = ("#e45756", "#4c78a8", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2")


def _bars(columns: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = min(5, len(columns))
    nrow = (len(columns) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.6 * nrow), squeeze=False)
    for k, col in enumerate(columns):
        ax = axes[k // ncol][k % ncol]
        names = [n for n, _ in series]
        vals = [v[k] if v[k] is not None else 0.0 for _, v in series]
        ax.bar(range(len(series)), vals, color=_COLORS[: len(series)])
        for j, (_, v) in enumerate(series):
            if v[k] is None:
                ax.text(j, 2, "missing", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set_title(col, fontsize=9)
        ax.set_ylim(0, 100)
        ax.set_xticks(range(len(series)), [n[:14] for n in names], rotation=90, fontsize=6)
    for k in range(len(columns), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _write(out_dir, title: str, table: str, doc: Mapping, figure_b64: str) -> Path:
    out_dir = Path(out_dir)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><pre>{html.escape(table)}</pre>"
            f"<img alt='bar chart per column' src='data:image/png;base64,{figure_b64}'></body></html>\n")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        (tmp / "table.md").write_text(table, encoding="utf-8")
        (tmp / "metrics.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return out_dir


def write_unibench_report(out_dir, res: Mapping, table: str) -> Path:
    cols = list(UNIBENCH_COLUMNS) + ["Avg"]
    ours = [None if res["columns"][c].get("score") is None else 100 * res["columns"][c]["score"] for c in UNIBENCH_COLUMNS]
    ours.append(None if res["avg"] is None else 100 * res["avg"])
    series = [(f"{res['model']} (nanoemox)", ours)] + [(n, list(v) + [a]) for n, v, a in PAPER_TABLE2]
    doc = {"table": "MER-UniBench (paper Table 2)", "ours": res,
           "paper": [{"model": n, **dict(zip(UNIBENCH_COLUMNS, v)), "Avg": a} for n, v, a in PAPER_TABLE2]}
    return _write(out_dir, "MER-UniBench (paper Table 2)", table, doc, _bars(cols, series, "MER-UniBench, x100"))


def write_avamerg_report(out_dir, res: Mapping, table: str, model: str = "ours") -> Path:
    cols = ["accuracy", "hit_rate", "dist1", "dist2"]
    series = [(f"{model} (nanoemox)", [res[c] for c in cols])] + [(n, [v[c] for c in cols]) for n, v in PAPER_TABLE5]
    doc = {"table": "AvaMERG (paper Table 5)", "ours": {k: v for k, v in res.items() if k != "predicted"},
           "paper": [{"model": n, **v} for n, v in PAPER_TABLE5]}
    return _write(out_dir, "AvaMERG (paper Table 5)", table, doc, _bars(["Acc", "Hit", "Dist-1", "Dist-2"], series, "AvaMERG, x100"))
