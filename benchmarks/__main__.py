"""Entry point: run the named benchmarks (default: all), print each table, append them to --out."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import BENCHMARKS
from .common import Context, Table, append_report, command_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    p.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    p.add_argument("--out", default="BENCHMARKS.md", help="markdown file the tables are appended to (default BENCHMARKS.md)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions per case (default 5)")
    p.add_argument("--clips", type=int, default=8, help="SynthAffect clips generated for the media cases (default 8)")
    args = p.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    tables: list[Table] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="nanoemox-bench-") as tmp:
        ctx = Context(preset=args.preset, repeats=args.repeats or 5, workdir=Path(tmp), n_clips=args.clips)
        for name in names:
            print(f"== {name} ({args.preset})", file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                out = importlib.import_module(f"benchmarks.{name}").run(ctx)
            except Exception as e:  # one broken case must not lose the others' tables
                traceback.print_exc()
                failed.append(name)
                mod = importlib.import_module(f"benchmarks.{name}")
                out = [Table(getattr(mod, "TITLE", name), ["status"], [[f"failed: {type(e).__name__}: {e}"]])]
            for table in out:
                table.print()
            tables.extend(out)
            print(f"   {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    append_report(Path(args.out), tables, args.preset, command_line(), elapsed)
    print(f"appended {len(tables)} table(s) to {args.out} in {elapsed:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
