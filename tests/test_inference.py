"""Inference: answer parsing, the Analyzer on a real clip (tiny preset, real encoders), the
`analyze` / `predict` commands (batching, resumability, bad items, rank sharding), the profiler."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nanoemox.cli import main
from nanoemox.errors import ConfigError
from nanoemox.inference import PREDICTION_FIELDS, Analyzer, parse_answer, resolve_tasks
from nanoemox.inference.parsing import prediction_line
from nanoemox.prompts import answer_erg, answer_label, answer_ov, answer_sentiment


def make_clip(path: Path, image: np.ndarray, speech_wav: Path, seconds: float = 3.0) -> Path:
    """A real mp4: the astronaut photo drifting sideways, with espeak-ng speech."""
    import soundfile as sf

    from mediakit import write_video

    wav, sr = sf.read(str(speech_wav), dtype="float32")
    img = np.ascontiguousarray(image[::2, ::2])
    frames = np.stack([np.roll(img, 2 * i, axis=1) for i in range(int(seconds * 10))])
    return write_video(path, frames, fps=10, waveform=wav[: int(seconds * sr)], sample_rate=sr)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut, speech_wav) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "astronaut.mp4", astronaut, speech_wav)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_preset("tiny")


# ------------------------------------------------------------------------------------ parsing
def test_parse_each_answer_form():
    r = parse_answer("mer", answer_label("happy"))
    assert (r.label, r.emotion, r.labels, r.parse_error) == ("happy", "happy", ["happy"], None)

    r = parse_answer("msa", answer_sentiment("negative", -1.5))
    assert (r.label, r.score, r.parse_error) == ("negative", -1.5, None)
    r = parse_answer("msa", answer_sentiment("positive"))
    assert (r.label, r.score, r.parse_error) == ("positive", None, None)

    r = parse_answer("mir", answer_label("Ask for help"))
    assert (r.label, r.intent, r.parse_error) == ("Ask for help", "Ask for help", None)

    r = parse_answer("ovmer", answer_ov(["worried", "sad", "tired"]))
    assert r.labels == ["worried", "sad", "tired"] and r.parse_error is None
    assert parse_answer("ovmer", "The character's emotional state is calm and content.").labels == ["calm", "content"]

    rationale = "The face shows a frown; the voice has a raised pitch, a shout. So the emotion is angry."
    r = parse_answer("eri", rationale)
    assert (r.reason, r.emotion, r.parse_error) == (rationale, "angry", None)

    chain = {"event": "the speaker missed the train", "emotion": "sad", "cause": "Missing it ruined the day", "goal": "to comfort"}
    r = parse_answer("erg", answer_erg(chain, "Oh no, I'm sorry. That sounds exhausting."))
    assert r.parse_error is None
    assert r.emotion == "sad" and r.reply == "Oh no, I'm sorry. That sounds exhausting."
    assert r.chain == chain and r.think.startswith("Firstly, the event scenario is")


@pytest.mark.parametrize(
    "task, raw, needle",
    [
        ("mer", "\x10(\x10( garbage zz", "most likely label"),
        ("mer", "", "empty"),
        ("msa", "The most likely label is furious (score +1.0).", "not one of"),
        ("msa", "The most likely label is positive (score +9.0).", "outside"),
        ("ovmer", "I think they feel many things", "emotional state"),
        ("eri", "The face shows nothing in particular; the words are plain", "names no emotion"),
        ("erg", "Sorry to hear that.", "<think>"),
        ("erg", "<think>Firstly, the event scenario is a", "unterminated"),
        ("erg", "<think>Firstly, the event scenario is a loss.</think> Sorry.", "lacks"),
    ],
)
def test_garbled_answers_report_parse_error(task, raw, needle):
    r = parse_answer(task, raw)
    assert r.parse_error and needle in r.parse_error
    assert r.raw == raw
    line = prediction_line("x1", r)
    assert tuple(line) == PREDICTION_FIELDS and line["parse_error"] == r.parse_error


def test_resolve_tasks():
    assert resolve_tasks("all") == ["msa", "mer", "ovmer", "eri", "mir", "erg"]
    assert resolve_tasks(["erg,mer", "mer"]) == ["erg", "mer"]
    assert resolve_tasks(None) == ["mer"]
    with pytest.raises(ConfigError, match="unknown task"):
        resolve_tasks("joy")


# ------------------------------------------------------------------------------------ Analyzer
def test_analyze_clip_all_tasks_one_encode(analyzer, clip, monkeypatch):
    calls = []
    real_encode = analyzer.model.encode
    monkeypatch.setattr(analyzer.model, "encode", lambda **kw: calls.append(sorted(kw)) or real_encode(**kw))
    res = analyzer.analyze(clip, tasks="all", transcript="I can't believe you forgot.", max_new_tokens=6)
    assert len(calls) == 1  # features computed once, shared by the six tasks
    assert list(res.results) == ["msa", "mer", "ovmer", "eri", "mir", "erg"]
    assert set(res.modalities) == {"frame", "audio", "face", "multi"}
    assert res.transcript_source == "given"
    assert isinstance(res.gate, list) and len(res.gate) == analyzer.model.config.num_experts
    assert abs(sum(res.gate) - 1.0) < 1e-3
    assert set(res.timings) == {"preprocess_s", "encode_s", "generate_s"}
    d = res.to_dict()
    json.dumps(d)  # JSON-ready
    for task, r in d["results"].items():
        assert r["task"] == task and isinstance(r["raw"], str)
        # an untrained model's bytes never follow the forms: each answer is flagged, not hidden
        assert r["parse_error"]
    again = analyzer.analyze(clip, tasks="all", transcript="I can't believe you forgot.", max_new_tokens=6)
    assert {t: r.raw for t, r in again.results.items()} == {t: r.raw for t, r in res.results.items()}  # greedy


def test_analyze_arrays_text_only_and_sampling(analyzer, astronaut, speech_wav):
    import soundfile as sf

    wav, sr = sf.read(str(speech_wav), dtype="float32")
    res = analyzer.analyze(frames=astronaut, waveform=wav, sample_rate=sr, tasks=["mer", "erg"], max_new_tokens=4)
    assert "frame" in res.modalities and "audio" in res.modalities and res.gate is not None
    text = analyzer.analyze(transcript="Thanks so much, this made my day!", tasks="msa", max_new_tokens=4)
    assert text.modalities == [] and text.gate is None and text.media is None
    a = analyzer.analyze(transcript="hello", tasks="mer", max_new_tokens=5, do_sample=True, temperature=1.0, seed=3)
    b = analyzer.analyze(transcript="hello", tasks="mer", max_new_tokens=5, do_sample=True, temperature=1.0, seed=3)
    assert a.results["mer"].raw == b.results["mer"].raw


def test_asr_transcribes_speech(analyzer, clip):
    res = analyzer.analyze(clip, tasks="mer", max_new_tokens=2, asr=True)
    assert res.transcript_source == "asr"
    assert "birthday" in res.transcript.lower()
    assert "asr_s" in res.timings


def test_missing_demo_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOEMOX_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="nanoemox demo"):
        Analyzer.load()
    with pytest.raises(ConfigError, match="not a nanoemox model"):
        Analyzer.load(model=tmp_path)


def test_profile_analyze(analyzer, clip):
    from nanoemox.inference.profile import profile_analyze

    prof = profile_analyze(analyzer, clip, task="mer", repeats=1, max_new_tokens=4)
    for k in ("preprocess_s", "encode_s", "generate_s", "lm_generate_s", "total_s"):
        assert prof[k] > 0
    assert prof["new_tokens"] >= 1 and prof["prompt_tokens"] > 0
    assert prof["generation_overhead_s"] == pytest.approx(prof["generate_s"] - prof["lm_generate_s"], abs=1e-4)


# ------------------------------------------------------------------------------------ CLI
def test_cli_analyze(clip, capsys):
    assert main(["analyze", str(clip), "--preset", "tiny", "--task", "mer,erg", "--task", "msa", "--json", "--max-new-tokens", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["results"]) == ["mer", "erg", "msa"] and out["gate"] is not None
    assert main(["analyze", str(clip), "--preset", "tiny", "--max-new-tokens", "3", "--transcript", "hi"]) == 0
    text = capsys.readouterr().out
    assert "mer" in text and "parse error" in text and "timings" in text
    assert main(["analyze", str(clip.parent / "nope.mp4"), "--preset", "tiny"]) == 2
    assert "file not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, analyzer) -> Path:
    return analyzer.model.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, clip, speech_wav) -> Path:
    from nanoemox.data.schema import AffectSample, write_manifest

    root = tmp_path_factory.mktemp("manifest")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 300)  # truncated junk
    import shutil

    shutil.copy(clip, root / "clip.mp4")
    shutil.copy(speech_wav, root / "speech.wav")
    samples = [
        AffectSample(id="a", video="clip.mp4", transcript="You forgot again.", emotion="angry", sentiment_score=-2.0),
        AffectSample(id="b", audio="speech.wav", emotion="sad", response="I'm sorry.", chain_of_empathy={"emotion": "sad"}),
        AffectSample(id="bad", video="broken.mp4", emotion="happy"),
        AffectSample(id="c", transcript="Could you help me move on Saturday?", intent="Ask for help", ov_labels=["hopeful"]),
        AffectSample(id="d", video="clip.mp4", emotion="happy", reason="The face smiles. So the emotion is happy."),
    ]
    path = root / "test.jsonl"
    write_manifest(path, samples)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_cli_predict_batched_resumable_bad_item(model_dir, manifest, tmp_path, capsys):
    from nanoemox.evaluation.runner import read_predictions

    out = tmp_path / "preds.jsonl"
    args = ["predict", str(manifest), "--model", str(model_dir), "--out", str(out), "--batch-size", "2", "--max-new-tokens", "3", "--quiet"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipped bad:" in err and "1 bad item(s)" in err
    lines = _lines(out)
    pairs = [(d["id"], d["task"]) for d in lines]
    expected = {("a", "msa"), ("a", "mer"), ("b", "mer"), ("b", "erg"), ("c", "ovmer"), ("c", "mir"), ("d", "mer"), ("d", "eri")}
    assert set(pairs) == expected and len(pairs) == len(expected)
    assert all(tuple(d) == PREDICTION_FIELDS for d in lines)
    assert len(read_predictions(out)) == len(expected)  # the evaluation suite reads it

    assert main(args) == 0  # rerun: nothing new, nothing duplicated
    err = capsys.readouterr().err
    assert "0 new answer(s)" in err and f"{len(expected)} already done" in err
    assert _lines(out) == lines

    # a crash mid-write leaves a partial last line: a rerun drops it and adds nothing twice
    with open(out, "a") as f:
        f.write('{"id": "a", "task": "erg", "raw')
    assert main(args) == 0
    assert _lines(out) == lines
    # --tasks overrides each sample's own tasks; pairs already written are skipped
    assert main(args + ["--tasks", "mer"]) == 0
    assert "1 new answer(s)" in capsys.readouterr().err  # only ("c", "mer") was missing
    got = [(d["id"], d["task"]) for d in _lines(out)]
    assert len(got) == len(set(got)) == len(expected) + 1


def test_cli_predict_rank_shards_merge(model_dir, manifest, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ranked.jsonl"
    base = ["predict", str(manifest), "--model", str(model_dir), "--out", str(out), "--tasks", "mer", "--max-new-tokens", "2", "--quiet"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(base) == 0
    assert not out.exists() and (tmp_path / "ranked.jsonl.rank1").is_file()  # waits for rank 0
    monkeypatch.setenv("RANK", "0")
    assert main(base) == 0
    assert "merged 2 rank files" in capsys.readouterr().err
    got = sorted(d["id"] for d in _lines(out))
    assert got == ["a", "b", "c", "d"]  # "bad" reported and skipped by its rank
    assert not list(tmp_path.glob("ranked.jsonl.rank*"))
