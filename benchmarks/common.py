"""Shared harness pieces: interleaved side-by-side timing, ratio statistics, machine description,
the shared test clips, tables printed to the terminal and appended to BENCHMARKS.md.

The machine is shared and noisy, so no lone wall time is reported: every case is run next to its
baseline in the same process, interleaved (A B, B A, A B, ...), several repetitions, and the figure
is the per-repetition ratio's median with its spread (min..max), or a count.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table as RichTable

        t = RichTable(title=self.title)
        for c in self.columns:
            t.add_column(c)
        for r in self.rows:
            t.add_row(*[str(c) for c in r])
        console = Console(width=None if Console().is_terminal else 140)
        console.print(t)
        for n in self.notes:
            console.print(f"  - {n}")


@dataclass
class Context:
    preset: str = "tiny"
    repeats: int = 5
    workdir: Path = Path("/tmp")
    n_clips: int = 8
    _corpus: dict[str, Any] | None = None

    def corpus(self) -> dict[str, Any]:
        """A small SynthAffect corpus (real mp4 clips with speech and a face), made once per run."""
        if self._corpus is None:
            from nanoemox.data.schema import read_manifest
            from nanoemox.data.synth import generate_corpus

            out = self.workdir / "corpus"
            if not (out / "all.jsonl").is_file():
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    generate_corpus(out, n=self.n_clips, seed=0, workers=1, progress=False)
            samples = read_manifest(out / "all.jsonl")
            self._corpus = {"dir": out, "samples": samples, "clips": [str(s.media_path()) for s in samples]}
        return self._corpus


def interleave(cases: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each case, `repeats` times, alternating the order every repetition so
    that drifting machine load hits every case alike. `warmup` untimed rounds go first."""
    names = list(cases)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t0 = time.perf_counter()
            cases[n]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[n].append(dt)
    return times


def ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    return [a / b for a, b in zip(num, den) if b > 0]


def spread(xs: Sequence[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    """'median [min..max]' of a sample."""
    if not xs:
        return "-"
    m = statistics.median(xs)
    return f"{fmt.format(m)}{unit} [{fmt.format(min(xs))}..{fmt.format(max(xs))}]"


def target(value: float, limit: float, op: str) -> str:
    ok = value <= limit if op == "<=" else value >= limit if op == ">=" else value < limit
    return f"{op} {limit:g}: {'met' if ok else 'NOT met'}"


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """VmHWM of this process (peak resident set since start or the last reset)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_info() -> dict[str, str]:
    import torch

    mem = "?"
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        pass
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {mem} memory, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, {torch.get_num_threads()} threads)",
    }


def append_report(out: Path, tables: list[Table], preset: str, command: str, elapsed_s: float) -> None:
    info = machine_info()
    head = [
        f"## Benchmark run {info['date']} (preset {preset})",
        "",
        f"- machine: {info['machine']}",
        f"- python {info['python']}, torch {info['torch']}",
        f"- preset: {preset}",
        f"- command: `{command}`",
        f"- harness wall time: {elapsed_s:.0f} s (for planning only; every figure below is a ratio or a count)",
        "",
    ]
    text = "\n".join(head) + "\n" + "\n".join(t.markdown() for t in tables) + "\n"
    out = Path(out)
    prefix = "" if not out.exists() or out.read_text().endswith("\n\n") else "\n"
    with open(out, "a", encoding="utf-8") as f:
        f.write(prefix + text)


def command_line() -> str:
    return " ".join(["python -m benchmarks", *sys.argv[1:]])
