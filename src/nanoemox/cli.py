"""The `nanoemox` command. Each area registers its own subcommands (`<area>/cli.py: register`);
this module only assembles them and turns user-facing errors into one-line messages."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Areas in help order; each module has `register(subparsers)` adding typed subcommands whose
# handler is stored as `func` and called with the parsed namespace, returning an exit code.
_AREAS = (
    "nanoemox.training.cli",  # demo, train
    "nanoemox.inference.cli",  # analyze, predict
    "nanoemox.evaluation.cli",  # evaluate
    "nanoemox.evaluation.benchmark_cli",  # benchmark (paper tables end to end)
    "nanoemox.serving.cli",  # serve
    "nanoemox.data.synth.cli",  # synth
    "nanoemox.data.cli",  # inspect, data
    "nanoemox.modeling.cli",  # params
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nanoemox",
        description="Nano-EmoX: multimodal affect from perception to empathy (six tasks, one compact model).",
    )
    parser.add_argument("--version", action="version", version=f"nanoemox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # an area not built yet must not break the others
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import NanoEmoXError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nanoemox never downloads models at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may follow options (`train tiny --out x phases.3.steps=5`)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NanoEmoXError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
