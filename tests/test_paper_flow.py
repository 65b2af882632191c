"""MER-UniBench end to end on the tiny preset: SynthAffect clips written as MER-, MSA- and
OV-format manifests, `predict --protocol unibench`, then Table 2 (markdown, JSON, HTML) with the
three extractors: `nanoemox serve --preset tiny` as a real OpenAI-compatible endpoint on loopback,
a tiny Hugging Face causal LM saved with save_pretrained, and the lexicon proxy; and an endpoint
that is down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nanoemox.cli import main
from nanoemox.data.schema import AffectSample, read_manifest, write_manifest
from serverkit import free_port

REPO = Path(__file__).resolve().parents[1]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def wheel_dir(refdata) -> Path:
    return refdata / "emotion_wheel"


@pytest.fixture(scope="module")
def unibench_data(tmp_path_factory) -> Path:
    """Three of the nine datasets, from SynthAffect clips, in the converters' formats: MER (one
    emotion), MSA (a score in [-3, 3], one gold 0) and OV (open-vocabulary labels)."""
    from nanoemox.data.synth import generate_corpus

    root = tmp_path_factory.mktemp("unibench")
    generate_corpus(root / "synth", 14, 11, workers=2, progress=False, size=96, fps=5)
    src = read_manifest(root / "synth" / "all.jsonl")
    data = root / "data"
    data.mkdir()
    write_manifest(data / "mer2023.jsonl", [AffectSample(id=s.id, source="mer2023", task="mer", video=s.video,
                                                         transcript=s.transcript, emotion=s.emotion) for s in src[:3]])
    msa = [AffectSample(id=s.id, source="mosi", task="msa", video=s.video, transcript=s.transcript,
                        sentiment_score=s.sentiment_score) for s in src[3:6]]
    for s, score in zip(msa, (0.0, -1.4, 2.2)):  # gold 0 is dropped by the paper's WAF
        s.sentiment_score, s.sentiment = score, None
    write_manifest(data / "mosi.jsonl", msa)
    write_manifest(data / "ovmerd.jsonl", [AffectSample(id=s.id, source="ovmerd", task="ovmer", video=s.video,
                                                        transcript=s.transcript, ov_labels=s.ov_labels) for s in src[6:9]])
    return data


@pytest.fixture(scope="module")
def lexicon_run(unibench_data, wheel_dir, tmp_path_factory) -> Path:
    """`nanoemox benchmark unibench` with the lexicon proxy: predict + extract + Table 2."""
    out = tmp_path_factory.mktemp("bench")
    rc = main(["benchmark", "unibench", "--preset", "tiny", "--data", str(unibench_data), "--out", str(out),
               "--extractor", "lexicon", "--cache", str(out / "cache"), "--wheel-dir", str(wheel_dir), "--max-new-tokens", "8"])
    assert rc == 0
    return out


def _check_table(report: Path, extractor_prefix: str) -> dict:
    doc = json.loads((report / "metrics.json").read_text())
    ours = doc["ours"]
    assert ours["extractor"].startswith(extractor_prefix)
    cols = ours["columns"]
    for col in ("MER2023", "MOSI", "OV-MERD"):
        assert cols[col]["score"] is not None and 0.0 <= cols[col]["score"] <= 1.0 and cols[col]["n_missing"] == 0, col
    assert cols["MOSI"]["n_gold_zero"] == 1
    for col in ("MER2024", "MELD", "IEMOCAP", "MOSEI", "SIMS", "SIMSv2"):
        assert cols[col]["score"] is None
    assert ours["partial"] and ours["n_present"] == 3
    assert abs(ours["avg"] - (cols["MER2023"]["score"] + cols["MOSI"]["score"] + cols["OV-MERD"]["score"]) / 3) < 1e-12
    table = (report / "table.md").read_text()
    assert "| model | MER2023 | MER2024 | MELD | IEMOCAP | MOSI | MOSEI | SIMS | SIMSv2 | OV-MERD | Avg |" in table
    assert "| Nano-EmoX (P2E), paper | 79.09 |" in table and "74.01" in table
    assert "missing" in table and "(partial, 3/9)" in table and f"Extractor: {extractor_prefix}" in table
    page = (report / "index.html").read_text()
    assert "MER-UniBench" in page and "data:image/png;base64," in page
    return ours


def test_unibench_protocol_predicts_the_ov_question(lexicon_run, unibench_data, tmp_path, capsys):
    for key in ("mer2023", "mosi", "ovmerd"):
        lines = [json.loads(x) for x in (lexicon_run / "predictions" / f"{key}.jsonl").read_text().splitlines()]
        ids = [s.id for s in read_manifest(unibench_data / f"{key}.jsonl")]
        assert sorted(d["id"] for d in lines) == sorted(ids) and {d["task"] for d in lines} == {"ovmer"}
    # the same through `nanoemox predict`: an MSA manifest is asked the OV question, not sentiment
    rc, _, err = _cli(capsys, "predict", unibench_data / "mosi.jsonl", "--preset", "tiny", "--protocol", "unibench",
                      "--out", tmp_path / "p.jsonl", "--max-new-tokens", "4", "--quiet", "--batch-size", "2")
    assert rc == 0 and "3 new answer(s)" in err
    assert {json.loads(x)["task"] for x in (tmp_path / "p.jsonl").read_text().splitlines()} == {"ovmer"}


def test_unibench_lexicon_table(lexicon_run, unibench_data, wheel_dir, capsys):
    ours = _check_table(lexicon_run / "report", "lexicon")
    assert ours["extractor_is_proxy"]
    assert "Proxy extractor" in (lexicon_run / "report" / "table.md").read_text()
    # a rerun costs nothing: predictions are resumed, extraction answers come from the cache
    rc, out, err = _cli(capsys, "benchmark", "unibench", "--preset", "tiny", "--data", unibench_data, "--out", lexicon_run,
                        "--extractor", "lexicon", "--cache", lexicon_run / "cache", "--wheel-dir", wheel_dir)
    assert rc == 0 and "0 new answer(s), 3 already done" in err
    again = json.loads((lexicon_run / "report" / "metrics.json").read_text())["ours"]
    assert again["extractor_stats"]["computed"] == 0 and again["extractor_stats"]["cached"] > 0
    assert again["columns"] == ours["columns"]


def test_unibench_hf_extractor(lexicon_run, unibench_data, wheel_dir, tmp_path, capsys):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from nanoemox.modeling.language_model import byte_tokenizer

    tok = byte_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    lm_dir = tmp_path / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    args = ["evaluate", "unibench", "--data", unibench_data, "--pred", lexicon_run / "predictions", "--out", tmp_path / "report",
            "--extractor", "hf", "--hf-model", lm_dir, "--cache", tmp_path / "cache", "--wheel-dir", wheel_dir]
    rc, _, err = _cli(capsys, *args)
    assert rc == 0, err
    ours = _check_table(tmp_path / "report", "hf:tiny-llama")
    assert not ours["extractor_is_proxy"] and ours["extractor_stats"]["computed"] > 0
    rc, _, _ = _cli(capsys, *args)
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["ours"]["extractor_stats"]["computed"] == 0


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    """`nanoemox serve --preset tiny` in its own process on a random loopback port."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "nanoemox.cli", "serve", "--preset", "tiny", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nanoemox serve exited: {log.read_text()[-500:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("nanoemox serve did not come up in 120 s")
    yield url + "/v1"
    proc.terminate()
    proc.wait(timeout=30)


def test_unibench_openai_extractor_on_nanoemox_serve(tiny_server, lexicon_run, unibench_data, wheel_dir, tmp_path, capsys):
    rc, _, err = _cli(capsys, "evaluate", "unibench", "--data", unibench_data, "--pred", lexicon_run / "predictions",
                      "--out", tmp_path / "report", "--extractor", "openai", "--llm-url", tiny_server,
                      "--cache", tmp_path / "cache", "--wheel-dir", wheel_dir, "--concurrency", "4")
    assert rc == 0, err
    ours = _check_table(tmp_path / "report", "openai:default@" + tiny_server)
    assert ours["extractor_stats"]["failed"] == 0 and ours["extractor_stats"]["computed"] > 0


def test_down_endpoint_clear_error_nothing_written(lexicon_run, unibench_data, wheel_dir, tmp_path, capsys):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "report"
    rc, stdout, err = _cli(capsys, "evaluate", "unibench", "--data", unibench_data, "--pred", lexicon_run / "predictions",
                           "--out", out, "--extractor", "openai", "--llm-url", dead, "--retries", "2",
                           "--cache", tmp_path / "cache", "--wheel-dir", wheel_dir)
    assert rc == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("error: openai extractor: cannot reach " + dead)
    assert not out.exists() and not list(tmp_path.glob("cache/*.jsonl"))
    # the driver checks the extractor before predicting anything
    rc, _, err = _cli(capsys, "benchmark", "unibench", "--preset", "tiny", "--data", unibench_data, "--out", tmp_path / "b",
                      "--extractor", "openai", "--llm-url", dead, "--retries", "1", "--wheel-dir", wheel_dir)
    assert rc == 2 and "cannot reach" in err and not (tmp_path / "b").exists()
