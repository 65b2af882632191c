"""Paper scale on paper: parameters, bytes, FLOPs per sample and KV-cache bytes per token of the
paper preset next to an AffectGPT-sized (8.3B) peer computed the same way (counts, no timing)."""
from __future__ import annotations

from .common import Context, Table

TITLE = "paper scale on paper: nanoemox (paper preset) vs an AffectGPT-sized 8.3B peer"


def run(ctx: Context) -> list[Table]:
    from nanoemox.modeling.cli import build_for_counting
    from nanoemox.modeling.cost import cost_rows, model_cost

    cost = model_cost(build_for_counting("paper"), include_peer=True)
    peer = cost["peer"]
    peer_rows = {(s, q): (v, txt) for s, q, v, txt in cost_rows(peer)}
    t = Table(TITLE, ["section", "quantity", "nanoemox 2.3B", "8.3B peer", "peer / nanoemox"])
    for section, q, v, txt in cost_rows(cost):
        pv, ptxt = peer_rows[(section, q)]
        t.rows.append([section, q, txt, ptxt, f"{pv / v:.2f}x" if v else "-"])
    t.notes += cost["assumptions"]
    t.notes.append(f"peer: {peer['name']}; LLM {peer['llm']['layers']} layers x {peer['llm']['hidden']}, "
                   f"{peer['llm']['kv_heads']} KV heads, vocab {peer['llm']['vocab']}; same encoders, adapters, LoRA rank and token counts")
    t.notes.append("reproduce: `nanoemox params --preset paper --cost` (add --json for the raw numbers)")
    return [t]
