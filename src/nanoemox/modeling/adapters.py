"""Heterogeneous adapters from encoder space into the language model's embedding space."""
from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


class CrossBlock(GradientCheckpointingLayer):
    """Pre-LN transformer block whose queries attend to themselves, then to a memory, then an FFN.

    The repeated block of the Q-Formers, the face head and the fusion experts: with gradient
    checkpointing on (`model.gradient_checkpointing_enable()`), transformers recomputes it in the
    backward pass; callers pass tensors positionally, as checkpointing requires."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float = 0.0, self_attention: bool = True):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True) if self_attention else None
        self.ln_self = nn.LayerNorm(hidden) if self_attention else None
        self.ln_q = nn.LayerNorm(hidden)
        self.ln_kv = nn.LayerNorm(hidden)
        self.cross_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.ln_ffn = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))

    def forward(self, q: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        # q: (B, Q, C); memory: (B, T, C); memory_mask: (B, T) True where valid
        if self.self_attn is not None:
            h = self.ln_self(q)
            q = q + self.self_attn(h, h, h, need_weights=False)[0]
        kpm = _key_padding(memory_mask)
        kv = self.ln_kv(memory)
        q = q + self.cross_attn(self.ln_q(q), kv, kv, key_padding_mask=kpm, need_weights=False)[0]
        return q + self.ffn(self.ln_ffn(q))


def _key_padding(mask: torch.Tensor | None) -> torch.Tensor | None:
    """MultiheadAttention wants True where a key is *ignored*. A row with no valid key at all (the
    modality is absent for that sample) would give NaN, so it attends to everything instead; the
    splice never uses that sample's output."""
    if mask is None:
        return None
    mask = mask.bool()
    mask = mask | ~mask.any(-1, keepdim=True)
    return ~mask


class QFormerAdapter(nn.Module):
    """Learned queries cross-attend to per-frame / per-clip features (with learned positions),
    then a linear map to the LLM width: (B, T, D_in) -> (B, num_queries, D_llm)."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, max_len: int, hidden: int, layers: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.input_proj = nn.Linear(in_dim, hidden)
        self.position = nn.Parameter(torch.zeros(1, max_len, hidden))
        self.queries = nn.Parameter(torch.randn(1, num_queries, hidden) * 0.02)
        self.blocks = nn.ModuleList(CrossBlock(hidden, heads, ffn, dropout) for _ in range(layers))
        self.ln_out = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, out_dim)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # feats: (B, T, D_in); mask: (B, T)
        memory = self.input_proj(feats) + self.position[:, : feats.shape[1]]  # (B, T, H)
        q = self.queries.expand(feats.shape[0], -1, -1)  # (B, Q, H)
        for block in self.blocks:
            q = block(q, memory, mask)
        return self.out_proj(self.ln_out(q))  # (B, Q, D_llm)


class FaceTemporalAdapter(nn.Module):
    """Enhanced facial encoder head: per-frame face vectors get temporal position embeddings, a few
    learned queries attend over the frames (frames without a face are masked out), then a 2-layer
    MLP maps each query to the LLM width: (B, T, D_face) -> (B, num_queries, D_llm)."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, max_frames: int, hidden: int, heads: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.input_proj = nn.Linear(in_dim, hidden)
        self.temporal_position = nn.Parameter(torch.randn(1, max_frames, hidden) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, num_queries, hidden) * 0.02)
        self.blocks = nn.ModuleList(CrossBlock(hidden, heads, hidden * 4, dropout, self_attention=False) for _ in range(layers))
        self.mlp = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # feats: (B, T, D_face); mask: (B, T) True where a face was detected
        memory = self.input_proj(feats) + self.temporal_position[:, : feats.shape[1]]  # (B, T, H)
        q = self.queries.expand(feats.shape[0], -1, -1)
        for block in self.blocks:
            q = block(q, memory, mask)
        return self.mlp(q)  # (B, Q, D_llm)
