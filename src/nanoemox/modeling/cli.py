"""`nanoemox params`: parameters per module and trainable per phase, without loading weights."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="parameter counts per module and trainable per curriculum phase")
    p.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    p.add_argument("--model", default=None, help="a trained model folder instead of a preset")
    p.add_argument("--cost", action="store_true", help="also print bytes, FLOPs per sample and KV-cache size")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=params_command)

    m = sub.add_parser("make-miniature", help="write the paper's pretrained parts in miniature (CLIP, HuBERT, FaceXFormer, Qwen2; real formats, random weights)")
    m.add_argument("out", help="output folder")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=miniature_command)


def miniature_command(args) -> int:
    from .pretrained.miniature import write_miniature

    for var, path in write_miniature(args.out, seed=args.seed).items():
        print(f"export {var}={path}")
    return 0


def count_parameters(model) -> dict:
    """{'groups': {group: n}, 'total': n, 'trainable': {phase: n}}; counts shared tensors once."""
    groups = {g: sum(p.numel() for _, p in ps) for g, ps in model.parameter_groups().items()}
    trainable = {phase: sum(groups[g] for g in parts) for phase, parts in model.config.phases.items()}
    return {"groups": groups, "total": sum(groups.values()), "trainable": trainable}


def build_for_counting(preset: str | None = None, model_dir: str | None = None):
    """Presets built from shapes alone go on the meta device (no memory, no weights needed)."""
    import torch

    from .configuration import NanoEmoXConfig
    from .modeling_nanoemox import NanoEmoXForConditionalGeneration
    from .presets import get_preset

    config = NanoEmoXConfig.load(model_dir) if model_dir else get_preset(preset)
    sources = {config.vision.source, config.audio.source, config.face.source, config.text.source}
    if sources == {"random"}:
        with torch.device("meta"):
            return NanoEmoXForConditionalGeneration(config)
    return NanoEmoXForConditionalGeneration(config)


def params_command(args) -> int:
    from rich.console import Console
    from rich.table import Table

    model = build_for_counting(args.preset, args.model)
    counts = count_parameters(model)
    cost = None
    if args.cost:
        from .cost import model_cost

        cost = model_cost(model)
    if args.json:
        extra = {"paper_reported_total": 2.2e9} if model.config.preset == "paper" else {}
        print(json.dumps({"preset": model.config.preset, **counts, **extra, **({"cost": cost} if cost else {})}))
        return 0
    phases = list(model.config.phases)
    table = Table(title=f"nanoemox parameters: preset {model.config.preset}")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for ph in phases:
        table.add_column(f"trainable {ph}", justify="right")
    for g, n in counts["groups"].items():
        if n:
            table.add_row(g, _fmt(n), *[_fmt(n) if g in model.config.phases[ph] else "-" for ph in phases])
    table.add_row("total", _fmt(counts["total"]), *[_fmt(counts["trainable"][ph]) for ph in phases], style="bold")
    console = Console(width=None if Console().is_terminal else 120)
    console.print(table)
    if model.config.preset == "paper":  # the published figure, beside ours
        console.print(f"paper preset: {_fmt(counts['total'])} here; the Nano-EmoX paper reports ~2.2B (spec count from the reference: ~2.3B)")
    if cost:
        from .cost import print_cost

        print_cost(cost, console)
    return 0


def _fmt(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"
