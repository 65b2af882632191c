"""The HTTP server, for real: uvicorn on a loopback port around the tiny preset, driven by httpx
and by the `openai` client; limits (size, duration, queue, timeout, key) and bad media."""
from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from nanoemox.inference import Analyzer
from nanoemox.serving import ServerSettings, create_app
from serverkit import serve_in_thread

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def clip(talking_clip) -> Path:
    return talking_clip


@pytest.fixture(scope="module")
def server():
    """(base_url, app) of a real uvicorn server in a thread; small limits to exercise them."""
    settings = ServerSettings(api_key=KEY, max_upload_mb=2, max_clip_seconds=10, timeout_s=60, queue_size=3)
    app = create_app(Analyzer.from_preset("tiny"), settings)
    with serve_in_thread(app) as url:
        yield url, app


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[::2, ::2]).save(buf, format="PNG")
    return buf.getvalue()


def test_health_models_and_key(server):
    url, app = server
    h = httpx.get(f"{url}/healthz").json()
    assert h["status"] == "ok" and h["auth"] is True and h["queue"]["capacity"] == 3 + h["batching"]["max_batch"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.get(f"{url}/v1/models", headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401
    models = httpx.get(f"{url}/v1/models", headers=AUTH).json()
    assert models["data"][0]["id"] == app.state.analyzer.name


def test_analyze_endpoint_real_clip(server, clip):
    url, _ = server
    with open(clip, "rb") as f:
        r = httpx.post(f"{url}/v1/analyze", headers=AUTH, files={"file": ("astronaut.mp4", f, "video/mp4")},
                       data={"tasks": "all", "transcript": "You forgot my birthday.", "max_new_tokens": "4"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["results"]) == ["msa", "mer", "ovmer", "eri", "mir", "erg"]
    assert set(body["modalities"]) == {"frame", "audio", "face", "multi"}
    assert len(body["gate"]) == 2 and body["transcript_source"] == "given"
    assert {"preprocess_s", "encode_s", "generate_s"} <= set(body["timings"])
    for task, res in body["results"].items():
        assert res["task"] == task and isinstance(res["raw"], str) and "parse_error" in res
    assert body["media"]["path"] == "upload.mp4"  # no server path leaks back


def test_openai_client_multimodal_and_streaming(server, clip, speech_wav, astronaut):
    from openai import OpenAI

    url, _ = server
    client = OpenAI(base_url=f"{url}/v1", api_key=KEY, timeout=120, max_retries=0)
    content = [
        {"type": "text", "text": "[Interaction] I can't believe you forgot my birthday."},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(speech_wav.read_bytes()).decode(), "format": "wav"}},
        {"type": "image_url", "image_url": {"url": _data_url(_png(astronaut), "image/png")}},
    ]
    done = client.chat.completions.create(model="nanoemox", messages=[{"role": "user", "content": content}], max_tokens=6)
    assert done.object == "chat.completion" and isinstance(done.choices[0].message.content, str)
    assert done.choices[0].finish_reason in ("stop", "length")
    extra = done.model_extra["nanoemox"]
    assert extra["task"] == "erg" and set(extra["modalities"]) == {"frame", "audio", "face", "multi"}
    assert extra["transcript"] == "I can't believe you forgot my birthday." and extra["parsed"]["raw"] == done.choices[0].message.content

    video = [{"type": "video_url", "video_url": {"url": _data_url(clip.read_bytes(), "video/mp4")}}, {"type": "text", "text": "hello"}]
    messages = [{"role": "user", "content": video}]
    plain = client.chat.completions.create(model="nanoemox", messages=messages, max_tokens=8, extra_body={"nanoemox_task": "msa"})
    assert plain.model_extra["nanoemox"]["task"] == "msa"
    stream = client.chat.completions.create(model="nanoemox", messages=messages, max_tokens=8, stream=True, extra_body={"nanoemox_task": "msa"})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed.strip() == plain.choices[0].message.content  # greedy: same answer either way

    chat = client.chat.completions.create(model="nanoemox", messages=[{"role": "user", "content": "Name one emotion."}], max_tokens=4,
                                          extra_body={"nanoemox_task": "chat"})
    assert isinstance(chat.choices[0].message.content, str) and chat.model_extra.get("nanoemox") is None


def test_bad_media_and_urls_are_4xx(server, tmp_path):
    url, _ = server

    def post_file(name: str, data: bytes, ctype: str = "video/mp4"):
        return httpx.post(f"{url}/v1/analyze", headers=AUTH, files={"file": (name, data, ctype)}, data={"max_new_tokens": "2"}, timeout=60)

    r = post_file("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    assert r.status_code == 422 and "unusable media" in r.json()["error"]["message"]
    r = post_file("notes.mp4", b"just some text, not a video at all\n" * 10)
    assert r.status_code == 422
    r = post_file("empty.wav", b"", "audio/wav")
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]

    def chat(part: dict, **extra):
        body = {"model": "m", "messages": [{"role": "user", "content": [part]}], "max_tokens": 2, **extra}
        return httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=body, timeout=60)

    for bad_url in ("http://127.0.0.1:9/clip.mp4", "file:///etc/passwd", "/etc/passwd"):
        r = chat({"type": "video_url", "video_url": {"url": bad_url}})
        assert r.status_code == 400 and "only data: URLs" in r.json()["error"]["message"]
    r = chat({"type": "input_audio", "input_audio": {"data": "%%% not base64 %%%", "format": "wav"}})
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
    r = chat({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode()}})
    assert r.status_code == 422
    r = chat({"type": "text", "text": "hi"}, nanoemox_task="dance")
    assert r.status_code == 400 and "unknown nanoemox_task" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", headers={**AUTH, "Content-Type": "application/json"}, content=b"{not json", timeout=30)
    assert r.status_code == 400
    r = chat({"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}, stream=True)
    assert r.status_code == 400  # streaming requests fail before the stream starts


def test_size_and_duration_limits(server):
    import soundfile as sf

    url, _ = server
    big = b"\x00" * (3 * 2**20)  # over the 2 MB cap
    r = httpx.post(f"{url}/v1/analyze", headers=AUTH, files={"file": ("big.mp4", big, "video/mp4")}, timeout=60)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000 * 25, dtype=np.int16), 16000, format="WAV", subtype="PCM_16")  # 25 s > 10 s cap, 0.8 MB
    r = httpx.post(f"{url}/v1/analyze", headers=AUTH, files={"file": ("long.wav", buf.getvalue(), "audio/wav")}, timeout=60)
    assert r.status_code == 413 and "at most 10 s" in r.json()["error"]["message"]


def test_timeout_answers_504_and_server_recovers(server):
    url, app = server
    settings = app.state.settings
    old = settings.timeout_s
    settings.timeout_s = 0.01
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "[Interaction] a long answer please"}], "max_tokens": 400}
        r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=body, timeout=60)
        assert r.status_code == 504 and "timed out" in r.json()["error"]["message"]
    finally:
        settings.timeout_s = old
    for _ in range(200):  # the cancelled job stops at its next token and frees its slot
        if app.state.worker.active == 0:
            break
        time.sleep(0.05)
    assert app.state.worker.active == 0
    r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, timeout=60)
    assert r.status_code == 200


def test_fifty_concurrent_requests_complete_or_503(server):
    url, app = server

    async def one(client: httpx.AsyncClient, i: int) -> int:
        body = {"model": "m", "messages": [{"role": "user", "content": f"[Recognition] request {i}"}], "max_tokens": 3}
        r = await client.post(f"{url}/v1/chat/completions", json=body)
        if r.status_code == 200:
            assert r.json()["choices"][0]["message"]["content"] is not None
        else:
            assert r.json()["error"]["type"] == "server_busy" and r.headers.get("retry-after")
        return r.status_code

    async def many() -> list[int]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(headers=AUTH, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    codes = asyncio.run(many())
    assert len(codes) == 50 and set(codes) <= {200, 503}
    assert codes.count(200) >= 4 and codes.count(503) >= 1  # the bounded queue answered 503 when full
    assert app.state.worker.active == 0
