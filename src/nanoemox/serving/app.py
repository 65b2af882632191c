"""The HTTP server: an OpenAI-compatible chat endpoint, a multipart analysis endpoint, a web page.

Endpoints
- `GET /` the web page (static files in ./static, no build step, no CDN).
- `GET /healthz` liveness + queue state (no key needed). `GET /v1/models` the one model.
- `POST /v1/analyze` multipart: `file` (video / audio / image, optional), `tasks` ("mer,erg" or
  "all"), `transcript`, `history` (JSON list of {speaker, text}), `asr`, `max_new_tokens`,
  `temperature` (0 = greedy), `top_p`, `seed` -> the JSON of `AnalysisResult.to_dict()`.
- `POST /v1/chat/completions` (OpenAI wire format, `stream: true` for SSE). Media come as message
  parts: `input_audio` {data: base64, format}, `image_url` / `video_url` {url: data: URL}, or
  `file` {file_data: data: URL or base64, filename}. At most one picture/video and one audio.
  The task: the `nanoemox_task` field, else a tag in the last user text -- [Recognition] mer,
  [Sentiment] msa, [Recogn_OV] ovmer, [Inference] eri, [Intent] mir, [Interaction] erg, or the
  task name in brackets ([erg]) -- else mer. The last user text without the tag is the clip's
  transcript (`nanoemox_transcript` overrides it); earlier turns become the dialogue history.
  The reply's content is the model's raw answer; the parsed fields, gate and timings ride along
  in an extra `nanoemox` object. `nanoemox_task: "chat"` instead runs the language model alone
  on the text conversation (no media, no task template), e.g. for the evaluation's extractor.

Limits: request bytes (`max_upload_mb`, 413), clip duration (`max_clip_seconds`, 413), a
per-request deadline (`timeout_s`, 504; decoding stops at the next token), and a bounded queue:
the model runs in ONE worker thread; at most `queue_size` requests wait behind the running one,
more get 503 at once. With `api_key` every /v1 route wants `Authorization: Bearer KEY` (401).
Requests never name server-side files: only uploads and data: URLs are read, any other URL is a
400. Unusable media are a 422 with the decoder's reason.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.schema import TASKS
from ..errors import MediaError, NanoEmoXError
from ..prompts import TASK_TAGS

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
MAX_TOKENS_CAP = 1024
# Task tags understood in chat text. [Recognition] is shared by MER and MSA in the prompts; it
# means MER here, and [Sentiment] picks MSA.
CHAT_TAGS = {tag.lower(): task for task, tag in TASK_TAGS.items() if task != "msa"}
CHAT_TAGS.update({"[sentiment]": "msa", **{f"[{t}]": t for t in TASKS}})
_TAG_RE = re.compile(r"\[[A-Za-z_]+\]")
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,(?P<data>.*)$", re.DOTALL)
_MIME_EXT = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv", "video/ogg": ".ogv",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/webm": ".webm", "audio/ogg": ".ogg", "audio/flac": ".flac", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "image/bmp": ".bmp",
}


@dataclass
class ServerSettings:
    api_key: str | None = None
    max_upload_mb: float = 25.0
    max_clip_seconds: float = 60.0
    timeout_s: float = 120.0
    queue_size: int = 8
    asr: bool = False  # transcribe speech when a request gives no transcript and does not say

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ApiError(Exception):
    """An error answered as OpenAI-style JSON: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = status, message, type_, param, headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: by Content-Length up front, else while they stream in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _too_large(self.max_bytes).response()(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        await self.app(scope, limited, send)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"request body is over the {max_bytes / 2**20:g} MB limit of this server (--max-upload-mb)", "request_too_large")


class _Cancelled(Exception):
    pass


async def wait_until(awaitable, deadline: float, cancel: threading.Event):
    """Await until the monotonic `deadline`; on timeout or client disconnect, tell the model worker
    to stop decoding (`cancel`) and answer 504 / re-raise."""
    try:
        return await asyncio.wait_for(awaitable, max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        cancel.set()
        raise ApiError(504, "the request timed out (--timeout)", "timeout") from None
    except asyncio.CancelledError:
        cancel.set()
        raise


class ModelWorker:
    """One thread runs the model; admission is bounded. Jobs get a `threading.Event` that is set
    when their request times out or goes away, so queued jobs are dropped and running ones stop
    decoding. A slot is freed only when its job has really finished, so the bound stays true."""

    def __init__(self, queue_size: int):
        self.capacity = max(0, int(queue_size)) + 1  # waiting + the one running
        self.active = 0
        self.served = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanoemox-model")

    def submit(self, fn: Callable[[threading.Event], Any]) -> tuple[asyncio.Future, threading.Event]:
        if self.active >= self.capacity:
            raise ApiError(503, f"server busy: {self.active} request(s) queued or running (capacity {self.capacity}); retry shortly",
                           "server_busy", headers={"Retry-After": "1"})
        cancel = threading.Event()

        def guarded():
            if cancel.is_set():
                raise _Cancelled()
            return fn(cancel)

        self.active += 1
        fut = asyncio.get_running_loop().run_in_executor(self._executor, guarded)
        fut.add_done_callback(self._release)
        return fut, cancel

    def _release(self, fut: asyncio.Future) -> None:
        self.active -= 1
        self.served += 1
        if not fut.cancelled():
            fut.exception()  # mark as retrieved: a timed-out job's error is expected, not lost

    async def result(self, fut: asyncio.Future, cancel: threading.Event, deadline: float):
        return await wait_until(asyncio.shield(fut), deadline, cancel)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------ media input
@dataclass
class MediaParts:
    """Decoded request media: (bytes, file suffix) for the picture/video and for the audio."""

    visual: tuple[bytes, str] | None = None
    audio: tuple[bytes, str] | None = None
    texts: list[str] = field(default_factory=list)

    def add(self, kind: str, data: bytes, suffix: str) -> None:
        if not data:
            raise ApiError(400, f"empty {kind} data", param="messages")
        slot = "audio" if kind == "audio" else "visual"
        if getattr(self, slot) is not None:
            raise ApiError(400, f"more than one {'audio' if slot == 'audio' else 'image/video'} part: send one clip per request", param="messages")
        setattr(self, slot, (data, suffix))


def decode_data_url(url: str, param: str) -> tuple[bytes, str]:
    """A data: URL -> (bytes, suffix). Any other scheme is refused: the server never fetches URLs
    and never opens its own files on a request's behalf."""
    if not isinstance(url, str) or not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if isinstance(url, str) and ":" in url else "that"
        raise ApiError(400, f"only data: URLs are accepted ({scheme} URLs are not fetched and server paths are never read); upload the bytes instead", param=param)
    m = _DATA_URL_RE.match(url)
    if not m:
        raise ApiError(400, "malformed data: URL", param=param)
    payload = m.group("data")
    if m.group("b64"):
        data = _b64(payload, param)
    else:
        from urllib.parse import unquote_to_bytes

        data = unquote_to_bytes(payload)
    return data, _MIME_EXT.get((m.group("mime") or "").lower(), "")


def _b64(text: str, param: str) -> bytes:
    try:
        return base64.b64decode("".join(str(text).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid base64 data", param=param) from None


def _materialize(parts: MediaParts, workdir: Path, analyzer, settings: ServerSettings):
    """Write the parts to a private temp folder and decode them (in the worker thread)."""
    from ..data.media import media_from_arrays

    def load(data: bytes, suffix: str, name: str):
        path = workdir / (name + (suffix or ".bin"))
        path.write_bytes(data)
        media = analyzer.load_media(path, max_seconds=settings.max_clip_seconds + 1.0)
        declared = media.info.get("duration_s") or media.duration_s or 0.0
        if declared > settings.max_clip_seconds or any("max_seconds" in w for w in media.warnings):
            raise ApiError(413, f"clip is {declared:.1f} s long; this server accepts at most {settings.max_clip_seconds:g} s (--max-clip-seconds)",
                           "clip_too_long", param="file")
        media.path = "upload" + (suffix or "")
        return media

    visual = load(*parts.visual, "visual") if parts.visual else None
    audio = load(*parts.audio, "audio") if parts.audio else None
    if audio is not None and audio.audio is None:
        raise MediaError("audio part", "holds no audio stream")
    if visual is None:
        return audio
    if audio is None:
        return visual
    sound = media_from_arrays(waveform=audio.audio, cfg=analyzer.media_config())
    return replace(visual, audio=sound.audio, audio_clips=sound.audio_clips, audio_clip_mask=sound.audio_clip_mask,
                   duration_s=max(visual.duration_s or 0.0, sound.duration_s or 0.0), warnings=visual.warnings + sound.warnings)


# ------------------------------------------------------------------------------------ chat parsing
@dataclass
class ChatRequest:
    task: str
    transcript: str
    history: list[dict[str, str]]
    media: MediaParts
    messages: list[dict[str, str]]  # text-only conversation (chat mode)
    max_new_tokens: int | None
    do_sample: bool
    temperature: float
    top_p: float
    seed: int | None
    stream: bool
    model: str
    asr: bool | None


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "only n=1 is supported", param="n")
    media = MediaParts()
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg:
            raise ApiError(400, f"messages[{i}] must be an object with a role", param="messages")
        role, content = str(msg["role"]), msg.get("content")
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                _chat_part(part, f"messages[{i}].content[{j}]", texts, media, role)
        elif content is not None:
            raise ApiError(400, f"messages[{i}].content must be a string or a list of parts", param="messages")
        turns.append((role, "\n".join(t for t in texts if t).strip()))

    task = body.get("nanoemox_task")
    user_idx = max((k for k, (r, _) in enumerate(turns) if r == "user"), default=None)
    if user_idx is None:
        raise ApiError(400, "no user message", param="messages")
    last_text = turns[user_idx][1]
    tag = _TAG_RE.search(last_text)
    if task is None and tag and tag.group(0).lower() in CHAT_TAGS:
        task = CHAT_TAGS[tag.group(0).lower()]
    if tag and tag.group(0).lower() in CHAT_TAGS:
        last_text = (last_text[: tag.start()] + last_text[tag.end() :]).strip()
    task = str(task or "mer").lower()
    if task not in TASKS and task != "chat":
        raise ApiError(400, f"unknown nanoemox_task {task!r} (one of {', '.join(TASKS)}, chat)", param="nanoemox_task")
    if task == "chat" and (media.visual or media.audio):
        raise ApiError(400, "nanoemox_task 'chat' takes text only; pick an affective task for media", param="nanoemox_task")
    transcript = body.get("nanoemox_transcript")
    transcript = last_text if transcript is None else str(transcript)
    history = [{"speaker": "Speaker" if r == "user" else "Listener", "text": t}
               for k, (r, t) in enumerate(turns) if k < user_idx and r in ("user", "assistant") and t]

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ApiError(400, "max_tokens must be a positive integer", param="max_tokens")
        max_tokens = min(max_tokens, MAX_TOKENS_CAP)
    temperature = _number(body.get("temperature"), "temperature", 0.0)
    top_p = _number(body.get("top_p"), "top_p", 1.0)
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise ApiError(400, "seed must be an integer", param="seed")
    asr = body.get("nanoemox_asr")
    return ChatRequest(
        task=task, transcript=transcript, history=history, media=media,
        messages=[{"role": r, "content": t} for r, t in turns if r in ("system", "user", "assistant")],
        max_new_tokens=max_tokens, do_sample=temperature > 0, temperature=temperature or 1.0, top_p=top_p, seed=seed,
        stream=bool(body.get("stream")), model=str(body.get("model") or ""), asr=None if asr is None else bool(asr),
    )


def _number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ApiError(400, f"{name} must be a non-negative number", param=name)
    return float(value)


def _chat_part(part: Any, where: str, texts: list[str], media: MediaParts, role: str) -> None:
    if not isinstance(part, dict) or "type" not in part:
        raise ApiError(400, f"{where} must be an object with a type", param="messages")
    kind = part["type"]
    if kind in ("text", "input_text"):
        texts.append(str(part.get("text") or ""))
        return
    if role != "user":
        raise ApiError(400, f"{where}: media parts are only read from user messages", param="messages")
    if kind == "input_audio":
        spec = part.get("input_audio") or {}
        fmt = str(spec.get("format") or "wav").lower().lstrip(".")
        if not re.fullmatch(r"[a-z0-9]{1,8}", fmt):
            raise ApiError(400, f"{where}: bad audio format", param="messages")
        media.add("audio", _b64(spec.get("data") or "", "messages"), "." + fmt)
    elif kind in ("image_url", "video_url"):
        spec = part.get(kind)
        url = spec.get("url") if isinstance(spec, dict) else spec
        data, suffix = decode_data_url(url, "messages")
        media.add("image" if kind == "image_url" else "video", data, suffix)
    elif kind in ("file", "input_file"):
        spec = part.get("file") or part
        raw = spec.get("file_data")
        if not raw:
            raise ApiError(400, f"{where}: only inline file_data is accepted (no file ids, no paths)", param="messages")
        data, suffix = decode_data_url(raw, "messages") if str(raw).startswith("data:") else (_b64(raw, "messages"), "")
        suffix = suffix or Path(str(spec.get("filename") or "")).suffix.lower()[:8]
        media.add("audio" if suffix in (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".opus") else "video", data, suffix)
    else:
        raise ApiError(400, f"{where}: unsupported part type {kind!r}", param="messages")


# ------------------------------------------------------------------------------------ the app
def create_app(analyzer, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app around a loaded `Analyzer`."""
    from transformers import TextStreamer

    settings = settings or ServerSettings()
    worker = ModelWorker(settings.queue_size)
    app = FastAPI(title="nanoemox", version="1", docs_url="/docs", redoc_url=None)
    app.state.analyzer, app.state.settings, app.state.worker = analyzer, settings, worker
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_bytes)
    app.router.add_event_handler("shutdown", worker.shutdown)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(_BodyTooLarge)
    async def _body_too_large(request: Request, exc: _BodyTooLarge):
        return _too_large(settings.max_bytes).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail), "http_error", headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return ApiError(400, f"{where}: {first.get('msg', 'invalid request')}", param=where or None).response()

    def check_key(request: Request) -> None:
        if not settings.api_key:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error",
                           headers={"WWW-Authenticate": "Bearer"})

    def run_analysis(parts: MediaParts, cancel: threading.Event, **kwargs: Any):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="nanoemox-req-") as tmp:
            media = _materialize(parts, Path(tmp), analyzer, settings) if (parts.visual or parts.audio) else None
            decode_s = time.perf_counter() - t0
            if cancel.is_set():
                raise _Cancelled()
            ready = kwargs.pop("on_ready", None)
            if ready is not None:
                ready()
            asr = kwargs.pop("asr", None)
            result = analyzer.analyze(media, asr=settings.asr if asr is None else asr, cancel=cancel, **kwargs)
        result.timings["preprocess_s"] = round(result.timings["preprocess_s"] + decode_s, 4)  # decoding ran here
        return result

    def error_of(exc: BaseException) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, MediaError):
            return ApiError(422, f"unusable media: {exc.reason}", "invalid_media", param="file")
        if isinstance(exc, NanoEmoXError):
            return ApiError(400, str(exc))
        if isinstance(exc, _Cancelled):
            return ApiError(504, "the request timed out (--timeout)", "timeout")
        log.error("request failed", exc_info=exc)
        return ApiError(500, f"internal error: {type(exc).__name__}", "server_error")

    async def run_job(fn: Callable[[threading.Event], Any]):
        deadline = time.monotonic() + settings.timeout_s
        fut, cancel = worker.submit(fn)
        try:
            return await worker.result(fut, cancel, deadline)
        except (ApiError, asyncio.CancelledError):
            raise
        except Exception as e:
            raise error_of(e) from None

    # ---------------------------------------------------------------- routes
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model": analyzer.name, "queue": {"active": worker.active, "capacity": worker.capacity},
                "served": worker.served, "auth": bool(settings.api_key), "tasks": list(TASKS),
                "limits": {"max_upload_mb": settings.max_upload_mb, "max_clip_seconds": settings.max_clip_seconds, "timeout_s": settings.timeout_s}}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [{"id": analyzer.name, "object": "model", "created": 0, "owned_by": "nanoemox"}]}

    @app.post("/v1/analyze")
    async def analyze(request: Request):
        check_key(request)
        try:
            form = await request.form(max_files=1, max_fields=32)
        except _BodyTooLarge:
            raise
        except Exception as e:
            raise ApiError(400, f"expected multipart/form-data ({type(e).__name__}: {e})") from None
        parts = MediaParts()
        upload = form.get("file")
        if upload is not None and not isinstance(upload, str):
            data = await upload.read()
            suffix = Path(upload.filename or "").suffix.lower()[:8]
            if not re.fullmatch(r"(\.[a-z0-9]{1,7})?", suffix):
                suffix = ""
            kind = "audio" if (upload.content_type or "").startswith("audio/") else "video"
            parts.add(kind, data, suffix or _MIME_EXT.get((upload.content_type or "").lower(), ""))
        from ..inference.analyzer import resolve_tasks

        try:
            tasks = resolve_tasks(form.get("tasks") or "mer")
        except NanoEmoXError as e:
            raise ApiError(400, str(e), param="tasks") from None
        history = _form_history(form.get("history"))
        max_new = _form_int(form.get("max_new_tokens"), "max_new_tokens", 1, MAX_TOKENS_CAP)
        temperature = _form_float(form.get("temperature"), "temperature", 0.0)
        top_p = _form_float(form.get("top_p"), "top_p", 1.0)
        seed = _form_int(form.get("seed"), "seed", 0, 2**31 - 1)
        asr = form.get("asr")
        asr_flag = None if asr in (None, "") else str(asr).lower() in ("1", "true", "yes", "on")
        transcript = str(form.get("transcript") or "")
        result = await run_job(lambda cancel: run_analysis(
            parts, cancel, transcript=transcript, history=history, tasks=tasks, max_new_tokens=max_new,
            do_sample=temperature > 0, temperature=temperature or 1.0, top_p=top_p, seed=seed, asr=asr_flag))
        return {"id": "analysis-" + uuid.uuid4().hex[:16], "object": "nanoemox.analysis", **result.to_dict()}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        try:
            body = await request.json()
        except _BodyTooLarge:
            raise
        except Exception:
            raise ApiError(400, "the request body is not valid JSON") from None
        req = parse_chat_request(body)
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model_name = analyzer.name
        gen = dict(do_sample=req.do_sample, temperature=req.temperature, top_p=req.top_p)

        def job(cancel: threading.Event, streamer=None, on_ready=None):
            if req.task == "chat":
                if on_ready:
                    on_ready()
                if req.seed is not None:
                    import torch

                    torch.manual_seed(req.seed)
                text = analyzer.chat(req.messages, req.max_new_tokens or 128, streamer=streamer, cancel=cancel, **gen)
                return text, None
            result = run_analysis(req.media, cancel, transcript=req.transcript, history=req.history, tasks=[req.task],
                                  max_new_tokens=req.max_new_tokens, seed=req.seed, asr=req.asr, streamer=streamer, on_ready=on_ready, **gen)
            return result.results[req.task].raw, result

        def extra(result) -> dict | None:
            if result is None:
                return None
            d = result.to_dict()
            return {"task": req.task, "parsed": d["results"][req.task], "gate": d["gate"], "timings": d["timings"],
                    "transcript": d["transcript"], "transcript_source": d["transcript_source"], "modalities": d["modalities"],
                    "warnings": d["warnings"]}

        def finish_reason(text: str) -> str:
            budget = req.max_new_tokens or (128 if req.task == "chat" else None)
            if budget is None:
                from ..inference.analyzer import DEFAULT_MAX_NEW_TOKENS

                budget = DEFAULT_MAX_NEW_TOKENS[req.task]
            return "length" if len(analyzer.tokenizer(text, add_special_tokens=False)["input_ids"]) >= budget else "stop"

        if not req.stream:
            text, result = await run_job(job)
            body = {
                "id": cid, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason(text)}],
            }
            if result is not None:
                body["nanoemox"] = extra(result)
            return body

        # Streaming: media are decoded before the response starts, so bad media still get a 4xx.
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        class QueueStreamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False):
                if text:
                    loop.call_soon_threadsafe(events.put_nowait, ("delta", text))

        streamer = QueueStreamer(analyzer.tokenizer, skip_prompt=True, skip_special_tokens=True)
        deadline = time.monotonic() + settings.timeout_s
        fut, cancel = worker.submit(lambda c: job(c, streamer, lambda: loop.call_soon_threadsafe(events.put_nowait, ("ready", None))))
        fut.add_done_callback(lambda f: events.put_nowait(("end", f)))
        first = await wait_until(events.get(), deadline, cancel)
        if first[0] == "end" and first[1].exception() is not None:
            raise error_of(first[1].exception())

        def chunk(delta: dict, finish: str | None = None, **more: Any) -> str:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more}
            return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"

        async def sse():
            pending = [first]
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    kind, value = pending.pop(0) if pending else await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
                    if kind == "delta":
                        yield chunk({"content": value})
                    elif kind == "end":
                        exc = value.exception() if not value.cancelled() else _Cancelled()
                        if exc is not None:
                            err = error_of(exc)
                            yield "data: " + json.dumps({"error": {"message": err.message, "type": err.type, "code": err.status}}) + "\n\n"
                        else:
                            text, result = value.result()
                            more = {"nanoemox": extra(result)} if result is not None else {}
                            yield chunk({}, finish_reason(text), **more)
                        yield "data: [DONE]\n\n"
                        return
            except asyncio.TimeoutError:
                cancel.set()
                yield "data: " + json.dumps({"error": {"message": "the request timed out (--timeout)", "type": "timeout", "code": 504}}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:
                cancel.set()  # no-op once finished; stops decoding when the client has gone

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _form_history(raw: Any) -> list[dict[str, str]]:
    if raw in (None, ""):
        return []
    try:
        hist = json.loads(str(raw))
    except json.JSONDecodeError:
        raise ApiError(400, "history must be a JSON list of {speaker, text}", param="history") from None
    if not isinstance(hist, list) or not all(isinstance(h, dict) and "text" in h for h in hist):
        raise ApiError(400, "history must be a JSON list of {speaker, text}", param="history")
    return [{"speaker": str(h.get("speaker") or "Speaker"), "text": str(h["text"])} for h in hist]


def _form_int(raw: Any, name: str, lo: int, hi: int) -> int | None:
    if raw in (None, ""):
        return None
    try:
        v = int(str(raw))
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", param=name) from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be in [{lo}, {hi}]", param=name)
    return v


def _form_float(raw: Any, name: str, default: float) -> float:
    if raw in (None, ""):
        return default
    try:
        v = float(str(raw))
    except ValueError:
        raise ApiError(400, f"{name} must be a number", param=name) from None
    if not v >= 0:
        raise ApiError(400, f"{name} must be non-negative", param=name)
    return v
