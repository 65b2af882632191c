"""Typed recipes: every built-in recipe validates, and a wrong key, type or value is one line that
names the key, the value and what was expected (from the library and from the CLI)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nanoemox.errors import ConfigError
from nanoemox.training.recipe import PhaseSpec, builtin_recipes, load_recipe


def test_every_builtin_recipe_validates():
    names = builtin_recipes()
    assert {"tiny", "demo", "joint", "paper"} <= set(names)
    for name in names:
        r = load_recipe(name, paths={"data": "/data", "out": "/out"})
        assert r.phases and all(isinstance(p, PhaseSpec) for p in r.phases)
        assert all(spec["manifest"].startswith("/data/") for spec in r.datasets.values())


def test_overrides_are_typed():
    r = load_recipe("tiny", ["phases.3.steps=5", "phases.3.lr=3e-4", "phases.1a.betas=[0.8, 0.9]", "seed=7"], paths={"data": "/d"})
    p3 = r.phases[3]
    # YAML reads 3e-4 as a string; the model turns it into the float it names
    assert (p3.steps, p3.lr, r.phases[0].betas, r.seed) == (5, 0.0003, (0.8, 0.9), 7)
    assert r.phases[2].init == ["1a", "1b"] and r.phases[0].init == ["base"]


@pytest.mark.parametrize(
    "override, needles",
    [
        ("phases.3.steps=ten", ["phases.3.steps", "'ten'", "integer"]),
        ("phases.3.steps=0", ["phases.3.steps", "0", "greater than 0"]),
        ("phases.3.schedule=linear", ["phases.3.schedule", "'linear'", "'cosine' or 'constant'"]),
        ("phases.3.stpes=10", ["unknown key", "phases.3.stpes"]),
        ("phases.1b.mixture=[{dataset: synth, task: mre}]", ["phases.1b.mixture.0.task", "'mre'", "unknown task"]),
        ("phases.1b.mixture=[{dataset: synth, task: mer, weight: -1}]", ["phases.1b.mixture.0.weight", "-1", "greater than 0"]),
        ("phases.2.trainable=[adapters]", ["phases.2.trainable", "adapters", "unknown part"]),
        ("phases.2.group_by_task=maybe", ["phases.2.group_by_task", "'maybe'", "boolean"]),
        ("seed=abc", ["seed", "'abc'", "integer"]),
        ("synth.n=lots", ["synth.n", "'lots'", "integer"]),
        ("model_overrides={tokens.audio: eight}", ["model_overrides", "tokens.audio", "'eight'", "integer"]),
        ("model_overrides={tokens.adio: 8}", ["model_overrides", "unknown key 'adio'"]),
        ("preset=huge", ["preset", "unknown preset 'huge'"]),
    ],
)
def test_bad_values_name_key_value_and_expectation(override, needles):
    with pytest.raises(ConfigError) as e:
        load_recipe("tiny", [override], paths={"data": "/d"})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("tiny.yaml: ")
    for n in needles:
        assert n in msg, (n, msg)


def test_cross_field_rules():
    with pytest.raises(ConfigError, match=r"phase 2: init names 'x', which is not an earlier phase"):
        load_recipe("tiny", ["phases.2.init=[x]"], paths={"data": "/d"})
    with pytest.raises(ConfigError, match=r"mixture.0.dataset: unknown dataset 'other'"):
        load_recipe("tiny", ["phases.2.mixture=[{dataset: other, task: mir}]"], paths={"data": "/d"})


def test_cli_prints_one_line_before_any_work(tmp_path):
    """`nanoemox train demo phases.3.steps=ten` (the demo recipe generates a corpus first when it
    is valid): one line, exit 2, no traceback, and nothing written."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NANOEMOX_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "nanoemox.cli", "train", "demo", "phases.3.steps=ten"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0] == "error: demo.yaml: phases.3.steps = 'ten': expected a valid integer, unable to parse string as an integer"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no runs/, no corpus, no cache


def test_dataset_folds_partition_a_manifest(tmp_path):
    """Two folds of one manifest (align phases on one, the LM phase on the other) are disjoint and
    together hold every sample of the manifest, read back from a real JSONL file."""
    import json

    from nanoemox.data.schema import read_manifest
    from nanoemox.training.recipe import select_fold

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "transcript": f"line {i}", "emotion": "happy"}) + "\n" for i in range(9)))
    samples = read_manifest(path)
    r = load_recipe("tiny", ['datasets={a: {manifest: "{data}/train.jsonl", fold: "0/2"}, b: {manifest: "{data}/train.jsonl", fold: "1/2"}}',
                             "phases.1a.mixture=[{dataset: a, task: mer}]", "phases.1b.mixture=[{dataset: a, task: mer}]",
                             "phases.2.mixture=[{dataset: a, task: mer}]", "phases.3.mixture=[{dataset: b, task: mer}]"],
                    paths={"data": str(tmp_path)})
    a = [s.id for s in select_fold(samples, r.datasets["a"]["fold"])]
    b = [s.id for s in select_fold(samples, r.datasets["b"]["fold"])]
    assert not set(a) & set(b) and sorted(a + b) == sorted(s.id for s in samples)
    assert len(a) == 5 and len(b) == 4  # positions 0, 2, 4, 6, 8 and 1, 3, 5, 7
    for bad, needle in (("2/2", "k must be below n"), ("x/2", "should match pattern")):
        with pytest.raises(ConfigError) as e:
            load_recipe("tiny", [f'datasets={{a: {{manifest: m.jsonl, fold: "{bad}"}}}}'], paths={"data": "/d"})
        assert "datasets.a.fold" in str(e.value) and needle in str(e.value), str(e.value)
