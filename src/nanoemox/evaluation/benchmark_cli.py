"""`nanoemox benchmark ...`: paper benchmarks end to end (the handlers live in paper_cli.py)."""
from __future__ import annotations

from .paper_cli import register_benchmark as register

__all__ = ["register"]
