"""Evaluation: metrics for all six tasks, the MER-UniBench emotion-wheel metric, label extraction,
reports, and the paper's own tables (paper.py: scoring rules; extractors.py: openai / hf /
lexicon answer -> labels with a disk cache; unibench.py: Table 2 and Table 5; emer.py: the judge).
Entry points: `evaluate_predictions`, `wheel_set_metric`, `wheel_hit_rate`, `load_wheels`,
`benchmark_wheel`; CLI `nanoemox evaluate {run,ovmer,eri-files,benchmark,unibench,avamerg,hitrate,
sentiment,mintrec,emer}` and `nanoemox benchmark unibench`."""
from .runner import aggregate_checkpoints, evaluate_predictions, read_predictions, score_eri_files, score_ovmer_csv
from .wheel import benchmark_wheel, load_wheels, parse_label_list, wheel_hit_rate, wheel_set_metric

__all__ = [
    "aggregate_checkpoints", "benchmark_wheel", "evaluate_predictions", "load_wheels", "parse_label_list",
    "read_predictions", "score_eri_files", "score_ovmer_csv", "wheel_hit_rate", "wheel_set_metric",
]
