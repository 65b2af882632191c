"""The fusion encoder: a gated mixture of cross-modal experts, pooled into the <MultiHere> token(s)."""
from __future__ import annotations

import torch
from torch import nn

from .adapters import CrossBlock


class FusionExpert(nn.Module):
    """Audio layer a_i attends to visual layer v_i: both projected to `hidden`, audio queries over
    visual keys/values with residual, then a pre-LN FFN (CrossBlock without self-attention).
    With `own_projections=False` the inputs arrive already projected (projections shared by all
    experts, as the authors built it)."""

    def __init__(self, audio_dim: int, visual_dim: int, hidden: int, heads: int, ffn: int, dropout: float = 0.0, own_projections: bool = True):
        super().__init__()
        if own_projections:
            self.audio_proj = nn.Linear(audio_dim, hidden)
            self.visual_proj = nn.Linear(visual_dim, hidden)
        else:
            self.audio_proj = self.visual_proj = None
        self.block = CrossBlock(hidden, heads, ffn, dropout, self_attention=False)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, audio_mask=None, visual_mask=None) -> torch.Tensor:
        # audio: (B, K, Da or H); visual: (B, T, Dv or H) -> (B, K, H)
        if self.audio_proj is not None:
            audio, visual = self.audio_proj(audio), self.visual_proj(visual)
        return self.block(audio, visual, visual_mask)


class FusionEncoder(nn.Module):
    """N experts, a softmax gate over them per sample, time-mean, linear to `num_tokens` LLM tokens.

    `shared_projections`: one audio and one visual projection to `hidden` serve every expert (the
    authors' design, paper preset); otherwise each expert owns its pair (tiny / small presets).
    forward returns (tokens (B, num_tokens, D_llm), gate weights (B, N)).
    """

    def __init__(self, audio_dim: int, visual_dim: int, out_dim: int, num_experts: int, num_tokens: int, hidden: int, heads: int, ffn: int, gate_hidden: int, dropout: float = 0.0, shared_projections: bool = False):
        super().__init__()
        if shared_projections:
            self.audio_proj = nn.Linear(audio_dim, hidden)
            self.visual_proj = nn.Linear(visual_dim, hidden)
        else:
            self.audio_proj = self.visual_proj = None
        self.experts = nn.ModuleList(FusionExpert(audio_dim, visual_dim, hidden, heads, ffn, dropout, own_projections=not shared_projections) for _ in range(num_experts))
        self.gate = nn.Sequential(nn.Linear(hidden * num_experts, gate_hidden), nn.GELU(), nn.Linear(gate_hidden, num_experts))
        self.num_tokens = num_tokens
        self.out_proj = nn.Linear(hidden, out_dim * num_tokens)

    def forward(self, audio_ms: torch.Tensor, visual_ms: torch.Tensor, audio_mask=None, visual_mask=None):
        # audio_ms: (B, K, N, Da); visual_ms: (B, T, N, Dv)
        if self.audio_proj is not None:
            audio_ms, visual_ms = self.audio_proj(audio_ms), self.visual_proj(visual_ms)  # (B, K, N, H), (B, T, N, H)
        outs = [e(audio_ms[:, :, i], visual_ms[:, :, i], audio_mask, visual_mask) for i, e in enumerate(self.experts)]  # N x (B, K, H)
        stacked = torch.stack(outs, 2)  # (B, K, N, H)
        pooled = _masked_mean(stacked, audio_mask)  # (B, N, H)
        gate = torch.softmax(self.gate(pooled.flatten(1)), dim=-1)  # (B, N)
        fused = (pooled * gate.unsqueeze(-1)).sum(1)  # (B, H)
        tokens = self.out_proj(fused).view(fused.shape[0], self.num_tokens, -1)  # (B, n_tok, D_llm)
        return tokens, gate


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    # x: (B, K, ...); mask: (B, K) -> mean over valid K
    if mask is None:
        return x.mean(1)
    m = mask.to(x.dtype).view(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)
