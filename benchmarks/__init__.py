"""nanoemox benchmarks: `python -m benchmarks [NAME...] [--preset tiny|small] [--out BENCHMARKS.md]`.

Each module has `TITLE` and `run(ctx) -> list[Table]`; every figure is a ratio measured side by
side in one run (interleaved repetitions, median and spread) or a count.
"""
from __future__ import annotations

# name -> module, in the order a full run goes (cheap and informative first)
BENCHMARKS = ("cost", "evaluation", "extraction", "media", "feature_cache", "generation", "training", "server")
