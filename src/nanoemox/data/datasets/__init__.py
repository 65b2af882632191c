"""Adapters from public benchmark formats to nanoemox manifests, behind one registry.

    from nanoemox.data.datasets import convert, formats
    result = convert("mintrec", "train_MIntRec_ann.json", media_root="~/data/MIntRec")
    result.samples        # list[AffectSample]
    result.missing_media  # media paths that do not exist
    result.skipped        # [(where, reason)] for records that could not be used

CLI: `nanoemox data formats`, `nanoemox data convert FORMAT SRC --media-root DIR --out x.jsonl`.
How authors' media paths are mapped onto `--media-root` is described in `base.py`.
"""
from __future__ import annotations

from .base import ConversionResult, FormatSpec, MediaLocator, convert, formats, get_format, register

# Importing the adapter modules registers them.
from . import dfer, dialogue, intent, mer, msa  # noqa: E402,F401  isort: skip

__all__ = ["ConversionResult", "FormatSpec", "MediaLocator", "convert", "formats", "get_format", "register"]
