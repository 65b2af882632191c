"""`nanoemox synth OUT_DIR --n N --seed S`: generate the SynthAffect corpus."""
from __future__ import annotations

import argparse

from ...errors import ConfigError


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}")
    return parts  # type: ignore[return-value]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate the SynthAffect corpus (mp4 + JSONL manifests + CARD.md)",
        description="Generate SynthAffect: drawn animated faces, espeak-ng speech and templated words in mp4 "
        "(h264 + AAC), with train/val/test JSONL manifests carrying targets for all six tasks and a corpus card.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (media/, *.jsonl, CARD.md)")
    p.add_argument("--n", type=int, default=200, help="number of clips (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical manifests")
    p.add_argument("--split-ratios", type=_ratios, default=(0.8, 0.1, 0.1), metavar="TRAIN,VAL,TEST", help="default 0.8,0.1,0.1")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--size", type=int, default=160, help="frame size in pixels (square, default 160)")
    p.add_argument("--fps", type=int, default=10, help="frames per second (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from . import generate_corpus
    from .card import probe_percentages

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    s = generate_corpus(
        args.out_dir, args.n, args.seed, split_ratios=args.split_ratios, workers=args.workers,
        progress=not args.no_progress, size=args.size, fps=args.fps,
    )
    acc = probe_percentages(s["probes"]["accuracy"])
    c = s["counts"]
    print(f"wrote {s['n']} clips to {s['out_dir']} (train {c['train']}, val {c['val']}, test {c['test']}) "
          f"in {s['seconds']:.0f} s ({s['seconds_per_clip']:.2f} s/clip)")
    print(f"face found in {s['face_detection_rate']:.1%} of sampled frames; emotion probes: text {acc['text']}, "
          f"face {acc['face']}, voice {acc['voice']}, all {acc['all']}")
    print(f"card: {s['paths']['card']}")
    return 0
