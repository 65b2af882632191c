"""Dynamic batching, for real: uvicorn on a loopback port around the tiny preset, concurrent httpx
clients in threads. Batched greedy answers are compared with the same analyzer answering each
request alone in process; strict request fields; int8 quantisation."""
from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest
import torch

from nanoemox.inference import Analyzer
from nanoemox.serving import ServerSettings, create_app
from serverkit import serve_in_thread

N = 6  # requests in the batch of the first test


@pytest.fixture(scope="module")
def served():
    """(url, app): a long batch wait, so that concurrent requests always meet in one batch even on
    a loaded machine (a batch runs as soon as `max_batch` requests are there; tests that send
    fewer set `max_batch` to their count or shorten the wait)."""
    settings = ServerSettings(max_batch=N, batch_wait_ms=30000, queue_size=2, timeout_s=120)
    app = create_app(Analyzer.from_preset("tiny"), settings)
    with serve_in_thread(app) as url:
        yield url, app


def _concurrently(calls: list) -> list:
    """Run the callables in threads at once; their results in order (exceptions re-raised)."""
    out: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            out[i] = calls[i]()
        except BaseException as e:  # surfaced below
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


def _chat(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _stream(url: str, body: dict) -> tuple[str, list[str], str]:
    """(streamed text, the content deltas, finish_reason) of an SSE chat completion."""
    deltas, finish = [], None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            assert "error" not in obj, obj
            choice = obj["choices"][0]
            if choice["delta"].get("content"):
                deltas.append(choice["delta"]["content"])
            finish = choice["finish_reason"] or finish
    return "".join(deltas), deltas, finish


def _sizes(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/healthz").json()["batching"]["sizes"]


def test_concurrent_streamed_and_plain_requests_share_one_batch_and_equal_unbatched(served, talking_clip):
    url, app = served
    analyzer = app.state.analyzer
    video = f"data:video/mp4;base64,{base64.b64encode(talking_clip.read_bytes()).decode()}"
    texts = ["[Recognition] You forgot my birthday.", "[Sentiment] This is wonderful news!", "[Interaction] I lost my keys again."]
    before = _sizes(url).get(str(N), 0)
    calls = [
        lambda: _stream(url, {"messages": [{"role": "user", "content": texts[0]}], "max_tokens": 12}),
        lambda: _stream(url, {"messages": [{"role": "user", "content": texts[2]}], "max_tokens": 20}),
        lambda: _chat(url, {"messages": [{"role": "user", "content": texts[1]}], "max_tokens": 7}),
        lambda: _chat(url, {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}},
                                                                     {"type": "text", "text": "hello"}]}], "max_tokens": 9,
                            "nanoemox_task": "msa"}),
        lambda: httpx.post(f"{url}/v1/analyze", files={"file": ("clip.mp4", talking_clip.read_bytes(), "video/mp4")},
                           data={"tasks": "mer,erg", "transcript": "You forgot.", "max_new_tokens": "5"}, timeout=120).json(),
        lambda: _chat(url, {"messages": [{"role": "user", "content": "Name one emotion."}], "max_tokens": 6, "nanoemox_task": "chat"}),
    ]
    s1, s2, plain, vid, multi, chat = _concurrently(calls)
    assert _sizes(url).get(str(N), 0) == before + 1  # all six in one batch

    # the same analyzer answering each request alone
    alone = lambda **kw: analyzer.analyze(**kw).results  # noqa: E731
    assert s1[0].strip() == alone(transcript="You forgot my birthday.", tasks="mer", max_new_tokens=12)["mer"].raw
    assert len(s1[1]) > 1 and s1[2] in ("stop", "length")  # token by token, not one lump
    assert s2[0].strip() == alone(transcript="I lost my keys again.", tasks="erg", max_new_tokens=20)["erg"].raw
    assert plain["choices"][0]["message"]["content"] == alone(transcript="This is wonderful news!", tasks="msa", max_new_tokens=7)["msa"].raw
    assert vid["choices"][0]["message"]["content"] == alone(media=str(talking_clip), transcript="hello", tasks="msa", max_new_tokens=9)["msa"].raw
    ref = alone(media=str(talking_clip), transcript="You forgot.", tasks="mer,erg", max_new_tokens=5)
    assert {t: r["raw"] for t, r in multi["results"].items()} == {t: r.raw for t, r in ref.items()}
    assert chat["choices"][0]["message"]["content"] == analyzer.chat([{"role": "user", "content": "Name one emotion."}], 6)
    # budgets of 5, 6, 7, 9, 12 and 20 tokens met in that batch: the equalities above hold only if
    # each row stopped at its own budget (an untrained model never emits its end token)


def test_disconnect_mid_stream_leaves_the_others_alone(served):
    url, app = served
    worker = app.state.worker
    worker.max_batch = 3
    try:
        gone = threading.Event()

        def leaver() -> int:
            seen = 0
            with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=120,
                              json={"messages": [{"role": "user", "content": "[Inference] tell me everything"}], "max_tokens": 1000, "stream": True}) as r:
                for line in r.iter_lines():
                    if '"content": "' in line and '"role"' not in line:
                        seen += 1
                    if seen == 2:
                        break  # hang up mid-stream
            gone.set()
            return seen

        body = {"messages": [{"role": "user", "content": "[Recognition] Why did you do that?"}], "max_tokens": 40}
        before = worker.stats()["cancelled"]
        seen, streamed, plain = _concurrently([leaver, lambda: _stream(url, body), lambda: _chat(url, body)])
        assert seen == 2 and gone.is_set()
        ref = app.state.analyzer.analyze(transcript="Why did you do that?", tasks="mer", max_new_tokens=40).results["mer"].raw
        assert streamed[0].strip() == ref and plain["choices"][0]["message"]["content"] == ref
        for _ in range(200):
            if worker.active == 0:
                break
            time.sleep(0.05)
        assert worker.active == 0 and worker.stats()["cancelled"] == before + 1
    finally:
        worker.max_batch = N


def test_seeded_sampling_is_reproducible_inside_a_batch(served):
    url, app = served
    worker = app.state.worker
    worker.max_batch = 3
    try:
        body = {"messages": [{"role": "user", "content": "[Recognition] hi"}], "max_tokens": 8, "temperature": 1.0, "seed": 7}
        a, b, g = _concurrently([lambda: _chat(url, body), lambda: _chat(url, body),
                                 lambda: _chat(url, {"messages": body["messages"], "max_tokens": 8})])
        ref = app.state.analyzer.analyze(transcript="hi", tasks="mer", max_new_tokens=8, do_sample=True, temperature=1.0, seed=7)
        assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"] == ref.results["mer"].raw
        assert g["choices"][0]["message"]["content"] == app.state.analyzer.analyze(transcript="hi", tasks="mer", max_new_tokens=8).results["mer"].raw
    finally:
        worker.max_batch = N


def test_queue_full_answers_503(served):
    url, app = served
    worker, analyzer = app.state.worker, app.state.analyzer
    body = {"messages": [{"role": "user", "content": "[Recognition] wait"}], "max_tokens": 2}
    n = worker.capacity + 2
    results: list = [None] * n
    worker.batch_wait_s = 0.005
    with analyzer._lock:  # the model is busy: every admitted request stays admitted
        threads = []
        for i in range(n):
            t = threading.Thread(target=lambda i=i: results.__setitem__(i, httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)))
            t.start()
            threads.append(t)
        for _ in range(400):
            if sum(r is not None for r in results) >= 2:
                break
            time.sleep(0.05)
        early = [r for r in results if r is not None]
        assert len(early) == 2 and all(r.status_code == 503 and r.json()["error"]["type"] == "server_busy" for r in early)
    for t in threads:
        t.join(timeout=120)
    worker.batch_wait_s = 30.0
    assert sorted(r.status_code for r in results) == [200] * (n - 2) + [503, 503]


def test_misspelt_and_mistyped_fields_are_one_line_400s(served):
    url, _ = served
    r = httpx.post(f"{url}/v1/analyze", data={"task": "intent", "transcript": "hi"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "unknown field 'task' (did you mean 'tasks'?)"
    r = httpx.post(f"{url}/v1/analyze", data={"tasks": "mir", "max_new_tokens": "ten"}, timeout=30)
    msg = r.json()["error"]["message"]
    assert r.status_code == 400 and msg.startswith("max_new_tokens='ten': ") and "integer" in msg and "\n" not in msg
    base = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = httpx.post(f"{url}/v1/chat/completions", json={**base, "nanoemox_tsak": "msa"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "unknown field 'nanoemox_tsak' (did you mean 'nanoemox_task'?)"
    r = httpx.post(f"{url}/v1/chat/completions", json={**base, "messages": [{"role": "user", "content": [{"type": "text", "txt": "hi"}]}]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "unknown field 'messages[0].content[0].txt' (did you mean 'text'?)"
    r = httpx.post(f"{url}/v1/chat/completions", json={**base, "temperature": "hot"}, timeout=30)
    msg = r.json()["error"]["message"]
    assert r.status_code == 400 and msg.startswith("temperature='hot': ") and "number" in msg
    # OpenAI's optional keys are accepted (a client library may send them)
    served[1].state.worker.max_batch = 1
    r = httpx.post(f"{url}/v1/chat/completions", json={**base, "presence_penalty": 0, "user": "u1", "stop": ["\n"]}, timeout=60)
    served[1].state.worker.max_batch = N
    assert r.status_code == 200


def test_openapi_documents_both_endpoints(served):
    url, _ = served
    spec = httpx.get(f"{url}/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["$ref"].endswith("/ChatCompletionRequest")
    fields = spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {"messages", "stream", "max_tokens", "nanoemox_task", "nanoemox_transcript"} <= set(fields)
    form_ref = spec["paths"]["/v1/analyze"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form = spec["components"]["schemas"][form_ref.rsplit("/", 1)[1]]["properties"]
    assert {"file", "tasks", "transcript", "history", "max_new_tokens", "seed"} <= set(form)
    ok = spec["paths"]["/v1/analyze"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/AnalysisResponse")
    assert httpx.get(f"{url}/docs").status_code == 200


def test_uploads_still_decoding_join_the_batch_and_a_bad_one_does_not_hold_it(talking_clip):
    """No batch-wait window at all: what gathers the uploads is the worker waiting for admitted
    requests whose media are still being decoded. One of the two decoder threads is held busy, so
    the clips decode one after another and reach the queue tens of ms apart (a window of 0 ms
    would otherwise start the first one alone). A request with undecodable media leaves the
    gathering (the others do not wait out `gather_ms` for it) and gets its 422."""
    n = 4
    settings = ServerSettings(max_batch=n, batch_wait_ms=0, gather_ms=60000, queue_size=2, timeout_s=120)
    app = create_app(Analyzer.from_preset("tiny"), settings)
    clip = talking_clip.read_bytes()

    def upload(data: bytes):
        return httpx.post(f"{url}/v1/analyze", files={"file": ("clip.mp4", data, "video/mp4")},
                          data={"tasks": "mer", "transcript": "You forgot.", "max_new_tokens": "4"}, timeout=120)

    with serve_in_thread(app) as url:
        hold = threading.Event()
        app.state.decoders.submit(hold.wait, 60)  # one decoder thread busy: decoding is serial
        threading.Timer(1.0, hold.set).start()  # the held thread comes back after the burst
        good = _concurrently([lambda: upload(clip) for _ in range(n - 1)] + [lambda: upload(b"not a video at all" * 50)])
        assert [r.status_code for r in good] == [200] * (n - 1) + [422], [r.text for r in good]
        sizes = _sizes(url)
        assert sizes == {str(n - 1): 1}, sizes  # the three good clips in one batch, nothing alone
        assert app.state.worker.preparing == 0 and app.state.worker.active == 0  # the bad upload withdrew
        answer = good[0].json()["results"]["mer"]["raw"]
        ref = app.state.analyzer.analyze(str(talking_clip), transcript="You forgot.", tasks="mer", max_new_tokens=4)
        assert answer == ref.results["mer"].raw


def test_all_tasks_of_a_clip_in_one_generate_equal_one_by_one(talking_clip, monkeypatch):
    import nanoemox.inference.analyzer as analyzer_mod

    analyzer = Analyzer.from_preset("tiny")
    calls = []
    real = analyzer_mod.decode
    monkeypatch.setattr(analyzer_mod, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    together = analyzer.analyze(talking_clip, tasks="all", transcript="You forgot.")
    assert len(calls) == 1  # six prompts, one decoding loop (each row to its own default budget)
    for task, res in together.results.items():
        assert res.raw == analyzer.analyze(talking_clip, tasks=task, transcript="You forgot.").results[task].raw


def test_decode_follows_generate_and_finished_rows_leave_the_batch():
    """The decoding loop against transformers' own `generate` (greedy, same processors): the same
    tokens for every row; with per-row budgets each row's answer is the prefix it had with the
    longest budget, and the language model's batch shrinks as rows finish."""
    from nanoemox.inference.analyzer import Encoded, Row
    from nanoemox.inference.generation import RowControl, Sampling, decode
    from nanoemox.modeling.processing import Example

    an = Analyzer.from_preset("tiny", seed=0)
    texts = ["I agree, the package arrived today.", "No way!", "hello there my friend, how are you doing", "ok"]
    rows = [Row(Encoded({}, frozenset()), task, t) for task, t in zip(("mer", "msa", "mir", "ovmer"), texts)]
    examples = []
    for r in rows:
        ids, _ = an.processor.tokenize(r.task, frozenset(), r.transcript, (), None)
        examples.append(Example(input_ids=ids, encoder_outputs={}, task=r.task, modalities=frozenset()))
    batch = an.processor.collate(examples)
    lm, pad = an.model.language_model, an.tokenizer.pad_token_id
    with torch.no_grad():
        ref = an.model.generate(batch["input_ids"], batch["attention_mask"], encoder_outputs=batch["encoder_outputs"], max_new_tokens=24)
        embeds = an.model.splice(batch["input_ids"], an.model.project(batch["encoder_outputs"])[0])
        sizes: list[int] = []
        real = lm.forward
        lm.forward = lambda *a, **k: sizes.append(int((k.get("inputs_embeds") if k.get("inputs_embeds") is not None else k["input_ids"]).shape[0])) or real(*a, **k)
        try:
            full = decode(lm, embeds, batch["attention_mask"], [RowControl(24) for _ in rows], Sampling(), an.tokenizer,
                          an._eos_ids(), suppress=an._suppress_ids())
            sizes.clear()
            short = decode(lm, embeds, batch["attention_mask"], [RowControl(b) for b in (2, 5, 9, 24)], Sampling(), an.tokenizer,
                           an._eos_ids(), suppress=an._suppress_ids())
        finally:
            del lm.forward
    for i, o in enumerate(full):
        gen = [t for t in ref[i].tolist() if t != pad]
        assert o.tokens == gen[: len(o.tokens)] and (o.finish == "stop" or len(o.tokens) == 24), (i, o.tokens, gen)
    for o, f in zip(short, full):
        assert o.tokens == f.tokens[: len(o.tokens)]
    if min(len(f.tokens) for f in full) >= 2:  # an end token before the budget can only shrink the batch sooner
        assert sizes[0] == 4 and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1, sizes


def test_int8_quantises_the_language_model(talking_clip, capsys):
    from nanoemox.cli import main

    q = Analyzer.from_preset("tiny", quantize="int8")
    lm = q.model.language_model
    from nanoemox.inference.quantization import Int8Linear as int8_linear  # weight-only int8 (tests/test_quantization.py)
    assert not any(type(m) is torch.nn.Linear for m in lm.modules())  # every LM linear layer is int8 ...
    assert sum(type(m) is int8_linear for m in lm.modules()) == 7 * lm.config.num_hidden_layers + 1  # q k v o gate up down per layer, lm_head
    assert any(type(m) is torch.nn.Linear for m in q.model.modules())  # ... and the adapters stay fp32
    res = q.analyze(talking_clip, tasks="mer", transcript="hi", max_new_tokens=4)
    assert isinstance(res.results["mer"].raw, str)
    assert main(["analyze", str(talking_clip), "--preset", "tiny", "--quantize", "int8", "--task", "msa", "--max-new-tokens", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["msa"]["task"] == "msa"
    from nanoemox.errors import ConfigError

    with pytest.raises(ConfigError, match="int4"):
        Analyzer.from_preset("tiny", quantize="int4")
