"""`nanoemox demo --quick` end to end: corpus, curriculum, six-task evaluation, cache reuse."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def test_quick_demo_trains_evaluates_and_reuses_its_cache(tmp_path):
    env = dict(os.environ, NANOEMOX_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "nanoemox.cli", "demo", "--quick", "--n", "24", "--json", "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads(first.stdout.strip().splitlines()[-1])
    assert set(metrics) == {"msa", "mer", "ovmer", "eri", "mir", "erg"}
    for task, m in metrics.items():
        assert m["n"] > 0 and m["missing"] == 0, (task, m)
        assert 0.0 <= m["headline"]["value"] <= 1.0 or task == "erg"
    models = list((tmp_path / "cache" / "models").iterdir())
    assert len(models) == 1 and (models[0] / "model.safetensors").is_file() and (models[0] / "metrics-test.json").is_file()
    second = subprocess.run(cmd[:-2] + ["--no-progress"], capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "using the cached demo model" in second.stderr
    assert "training recipe" not in second.stderr
    assert "example clip" in second.stderr  # the readable run analyses one clip with every task
    for task in ("msa", "mer", "ovmer", "eri", "mir", "erg"):
        assert f" {task} " in second.stderr or f"{task:6}" in second.stderr
