"""Evaluation: metrics for all six tasks, the MER-UniBench emotion-wheel metric, label extraction,
reports. Entry points: `evaluate_predictions`, `wheel_set_metric`, `wheel_hit_rate`,
`load_wheels`, `benchmark_wheel`; CLI `nanoemox evaluate {run,ovmer,eri-files,benchmark}`."""
from .runner import aggregate_checkpoints, evaluate_predictions, read_predictions, score_eri_files, score_ovmer_csv
from .wheel import benchmark_wheel, load_wheels, parse_label_list, wheel_hit_rate, wheel_set_metric

__all__ = [
    "aggregate_checkpoints", "benchmark_wheel", "evaluate_predictions", "load_wheels", "parse_label_list",
    "read_predictions", "score_eri_files", "score_ovmer_csv", "wheel_hit_rate", "wheel_set_metric",
]
