"""Inference: the `Analyzer` API, answer parsing, and the `analyze` / `predict` commands."""
from .analyzer import AnalysisResult, Analyzer, resolve_tasks
from .parsing import PREDICTION_FIELDS, ParsedAnswer, parse_answer

__all__ = ["Analyzer", "AnalysisResult", "ParsedAnswer", "parse_answer", "resolve_tasks", "PREDICTION_FIELDS"]
