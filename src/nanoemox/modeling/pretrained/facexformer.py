"""FaceXFormer's face encoder (Narayan et al.), the face backbone the Nano-EmoX paper names, built so
that the authors' released checkpoint loads with ``strict=True``.

The release (``torch.save({"state_dict_backbone": model.state_dict()})``) holds a whole FaceXFormer:
- ``backbone``: torchvision's ``swin_b`` without its classifier, i.e. ``Sequential(features, norm,
  permute, avgpool, flatten)``; only ``features`` (``backbone.0``) and ``norm`` (``backbone.1``)
  carry tensors;
- ``linear_c.{0..3}.proj``: per-stage linear maps of the four stage outputs (forward hooks on
  ``backbone.0.1/.3/.5/.7``) to 256 channels, upsampled to the first stage's grid;
- ``linear_fuse``: a bias-free 1x1 conv over the four maps (deepest first) -> 256 channels;
- ``pe_layer`` and ``face_decoder``: the task decoder (parsing, landmarks, pose, attributes, ...).

torchvision does not run beside our torch build, so the Swin modules are rebuilt here with the
same module paths and tensor names (checked against transformers' ``SwinModel`` in the tests). We
keep the encoder up to the fused 256-channel map and mean-pool it to one 256-d vector per frame,
the vector Nano-EmoX's temporal face module attends over. The decoder is not needed: its tensors
are dropped by name (``IGNORED_PREFIXES``); anything else unknown or missing is an error.

The architecture is read from the checkpoint's own tensor shapes (embed dim, depths, heads, window,
patch size), so a miniature checkpoint in the same layout loads exactly like the real Swin-B one.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nanoemox.errors import ConfigError

RELEASE_KEY = "state_dict_backbone"
IGNORED_PREFIXES = ("face_decoder.", "pe_layer.")  # FaceXFormer's task decoder: not used here
SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=7, patch_size=4)
FUSED_DIM = 256
IMAGE_MEAN = (0.485, 0.456, 0.406)  # the release's (ImageNet) normalisation, 224 px face crops
IMAGE_STD = (0.229, 0.224, 0.225)


class WindowAttention(nn.Module):
    """(Shifted-)window multi-head self-attention on a (B, H, W, C) map, torchvision's layout."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        c = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)  # (2, w*w)
        rel = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (window - 1)  # (w*w, w*w, 2), from 0
        self.register_buffer("relative_position_index", (rel[..., 0] * (2 * window - 1) + rel[..., 1]).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        w = self.window
        x = F.pad(x, (0, 0, 0, (w - W % w) % w, 0, (w - H % w) % w))
        Hp, Wp = x.shape[1:3]
        shift = (0 if w >= Hp else self.shift, 0 if w >= Wp else self.shift)  # one window: no shift
        if any(shift):
            x = torch.roll(x, (-shift[0], -shift[1]), (1, 2))
        nw = (Hp // w) * (Wp // w)
        x = x.view(B, Hp // w, w, Wp // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B * nw, w * w, C)
        q, k, v = self.qkv(x).view(B * nw, w * w, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * (C // self.heads) ** -0.5) @ k.transpose(-2, -1)  # (B*nw, heads, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index].view(w * w, w * w, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if any(shift):
            attn = (attn.view(B, nw, self.heads, w * w, w * w) + _shift_mask(Hp, Wp, w, shift, x).unsqueeze(1)).view(-1, self.heads, w * w, w * w)
        x = self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(B * nw, w * w, C))
        x = x.view(B, Hp // w, Wp // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        if any(shift):
            x = torch.roll(x, shift, (1, 2))
        return x[:, :H, :W].contiguous()


def _shift_mask(Hp: int, Wp: int, w: int, shift: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """-100 between tokens that a cyclic shift brought into one window from different regions."""
    region = like.new_zeros(Hp, Wp)
    n = 0
    for hs in (slice(0, -w), slice(-w, -shift[0]), slice(-shift[0], None)):
        for ws in (slice(0, -w), slice(-w, -shift[1]), slice(-shift[1], None)):
            region[hs, ws] = n
            n += 1
    region = region.view(Hp // w, w, Wp // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)  # (nw, N)
    diff = region.unsqueeze(1) - region.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)  # (nw, N, N)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = WindowAttention(dim, heads, window, shift)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        # torchvision.ops.MLP: Linear, GELU, Dropout, Linear, Dropout -> tensors at .0 and .3
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Identity(), nn.Linear(4 * dim, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def swin_features(embed_dim: int, depths, num_heads, window_size: int, patch_size: int = 4) -> nn.Sequential:
    """torchvision ``SwinTransformer.features``: patch embedding, then stage / merging alternating."""
    layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, embed_dim, patch_size, patch_size), _ToChannelsLast(), nn.LayerNorm(embed_dim, eps=1e-5))]
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        dim = embed_dim * 2**i
        layers.append(nn.Sequential(*(SwinBlock(dim, heads, window_size, 0 if j % 2 == 0 else window_size // 2) for j in range(depth))))
        if i < len(depths) - 1:
            layers.append(PatchMerging(dim))
    return nn.Sequential(*layers)


class _StageProjection(nn.Module):  # FaceXFormer's per-stage "MLP": one linear to the fused width
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.proj = nn.Linear(dim, out)


class FaceXFormerEncoder(nn.Module):
    """Face crops (N, 3, 224, 224), ImageNet-normalised -> (N, 256): the fused multi-scale map of
    FaceXFormer's encoder, mean-pooled over space. Tensor names follow the release."""

    def __init__(self, embed_dim: int = 128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size: int = 7, patch_size: int = 4, fused_dim: int = FUSED_DIM):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ConfigError("FaceXFormer's encoder has four Swin stages (depths and num_heads of length 4)")
        self.arch = dict(embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads), window_size=window_size, patch_size=patch_size, fused_dim=fused_dim)
        self.backbone = nn.Sequential(swin_features(embed_dim, depths, num_heads, window_size, patch_size), nn.LayerNorm(embed_dim * 8, eps=1e-5))
        self.linear_c = nn.ModuleList(_StageProjection(embed_dim * 2**i, fused_dim) for i in range(4))
        self.linear_fuse = nn.Conv2d(4 * fused_dim, fused_dim, kernel_size=1, bias=False)
        self.feature_dim = fused_dim

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs (B, H_i, W_i, C_i) the release hooks (``backbone.0.1/3/5/7``)."""
        out = []
        for i, layer in enumerate(self.backbone[0]):
            x = layer(x)
            if i in (1, 3, 5, 7):
                out.append(x)
        return out

    def fused_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 256, H_1, W_1): every stage projected to 256, upsampled to stage 1's grid, deepest first, fused."""
        stages = self.stage_outputs(x)
        size = stages[0].shape[1:3]
        maps = []
        for s, lin in zip(stages, self.linear_c):
            m = lin.proj(s).permute(0, 3, 1, 2)  # (B, 256, H_i, W_i)
            maps.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False))
        return self.linear_fuse(torch.cat(maps[::-1], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused_map(x).mean((2, 3))


def architecture_from_state(state: dict[str, torch.Tensor]) -> dict:
    """Embed dim, depths, heads, window and patch size as the tensors' shapes record them."""
    try:
        conv = state["backbone.0.0.0.weight"]  # (embed, 3, p, p)
        fuse = state["linear_fuse.weight"]  # (256, 1024, 1, 1)
    except KeyError as e:
        raise ConfigError(f"not a FaceXFormer state dict (no {e.args[0]})") from None
    depths, heads, window = [], [], None
    for stage in (1, 3, 5, 7):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"backbone\.0\.{stage}\.(\d+)\.", k))}
        if not blocks:
            raise ConfigError(f"not a FaceXFormer state dict (no blocks in stage backbone.0.{stage})")
        depths.append(max(blocks) + 1)
        table = state[f"backbone.0.{stage}.0.attn.relative_position_bias_table"]
        heads.append(int(table.shape[1]))
        window = (int(round(math.sqrt(table.shape[0]))) + 1) // 2
    return dict(embed_dim=int(conv.shape[0]), depths=depths, num_heads=heads, window_size=window, patch_size=int(conv.shape[-1]), fused_dim=int(fuse.shape[0]))


def read_release(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a FaceXFormer release file (a folder holding one ``.pt``/``.pth`` works too)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".pt", ".pth", ".bin"))
        if len(files) != 1:
            raise ConfigError(f"face weights: {path} should hold exactly one FaceXFormer .pt/.pth file (found {len(files)})")
        path = files[0]
    if not path.is_file():
        raise ConfigError(f"face weights: FaceXFormer checkpoint {path} not found (nanoemox never downloads; pass the local release file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear line
        raise ConfigError(f"face weights: {path} is not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(ckpt, dict) and RELEASE_KEY in ckpt:
        ckpt = ckpt[RELEASE_KEY]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ConfigError(f"face weights: {path} holds no FaceXFormer state dict (expected a dict with {RELEASE_KEY!r})")
    return ckpt


def load_facexformer(path: str | Path) -> FaceXFormerEncoder:
    """Build the encoder from the release file's own shapes and load it strictly; the decoder's
    tensors (``face_decoder.*``, ``pe_layer.*``) are the only ones left out."""
    state = read_release(path)
    kept = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    model = FaceXFormerEncoder(**architecture_from_state(kept))
    try:
        model.load_state_dict(kept, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"face weights: {path} does not match FaceXFormer's layout: {str(e).splitlines()[0]} {str(e).splitlines()[1:2]}") from None
    return model.float()
