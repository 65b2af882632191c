"""The HTTP routes: health, models, multipart analysis, OpenAI chat completions (plain and SSE)."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse

from ..data.schema import TASKS
from ..errors import NanoEmoXError
from ..inference.analyzer import AnalysisRequest, resolve_tasks
from ..inference.generation import RowControl, Sampling
from .errors import ApiError, error_of, unknown_field
from .media import MIME_EXT, MediaParts, decode_parts
from .openai import chat_inputs, extra_fields, sse, sse_error
from .schema import ANALYZE_FIELDS, MAX_TOKENS_CAP, AnalysisResponse, ChatCompletion, ChatCompletionRequest, ErrorResponse
from .worker import Job

router = APIRouter()
CHAT_DEFAULT_TOKENS = 128
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503, 504)}


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


async def start_job(request: Request, parts: MediaParts, make: Callable[[Any, float], dict[str, Any]]) -> tuple[Job, float]:
    """Admit (503 when full), decode the media off the event loop, queue the job; -> (job, decode s)."""
    state = request.app.state
    state.worker.admit()
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    deadline = time.monotonic() + state.settings.timeout_s
    t0 = time.perf_counter()
    decoding = None
    try:
        media = None
        if parts:
            decoding = loop.run_in_executor(state.decoders, decode_parts, parts, state.analyzer, state.settings.max_clip_seconds)
            media = await wait_until(asyncio.shield(decoding), deadline, cancel)
        job = Job(loop, loop.create_future(), cancel, deadline, **make(media, cancel))
    except BaseException as e:
        if decoding is not None and not decoding.done():  # the slot is free once the decoder really is
            decoding.add_done_callback(lambda f: (f.cancelled() or f.exception(), state.worker.withdraw()))
        else:
            state.worker.withdraw()
        if isinstance(e, Exception) and not isinstance(e, ApiError):
            raise error_of(e) from None
        raise
    state.worker.put(job)
    return job, time.perf_counter() - t0


async def result_of(job: Job):
    try:
        return await wait_until(asyncio.shield(job.future), job.deadline, job.cancel)
    except (ApiError, asyncio.CancelledError):
        raise
    except Exception as e:
        raise error_of(e) from None


# ------------------------------------------------------------------------------------ routes
@router.get("/healthz")
async def healthz(request: Request):
    s, w, a = request.app.state.settings, request.app.state.worker, request.app.state.analyzer
    return {"status": "ok", "model": a.name, "quantize": a.quantize, "queue": {"active": w.active, "capacity": w.capacity},
            "served": w.served, "batching": w.stats(), "auth": bool(s.api_key), "tasks": list(TASKS),
            "limits": {"max_upload_mb": s.max_upload_mb, "max_clip_seconds": s.max_clip_seconds, "timeout_s": s.timeout_s}}


@router.get("/v1/models")
async def models(request: Request):
    name = request.app.state.analyzer.name
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "nanoemox"}]}


@router.post("/v1/analyze", responses={200: {"model": AnalysisResponse}, **ERRORS})
async def analyze(
    request: Request,
    file: UploadFile | None = File(None, description=ANALYZE_FIELDS["file"]),
    tasks: str = Form("mer", description=ANALYZE_FIELDS["tasks"]),
    transcript: str = Form("", description=ANALYZE_FIELDS["transcript"]),
    history: str | None = Form(None, description=ANALYZE_FIELDS["history"]),
    asr: bool | None = Form(None, description=ANALYZE_FIELDS["asr"]),
    max_new_tokens: int | None = Form(None, ge=1, le=MAX_TOKENS_CAP, description=ANALYZE_FIELDS["max_new_tokens"]),
    temperature: float = Form(0.0, ge=0, le=2, description=ANALYZE_FIELDS["temperature"]),
    top_p: float = Form(1.0, ge=0, le=1, description=ANALYZE_FIELDS["top_p"]),
    seed: int | None = Form(None, ge=0, le=2**31 - 1, description=ANALYZE_FIELDS["seed"]),
):
    """Analyse one clip (multipart/form-data) for one or more tasks; unknown fields are a 400."""
    form = await request.form()
    for key in form.keys():
        if key not in ANALYZE_FIELDS:
            raise unknown_field(key, ANALYZE_FIELDS)
    if len(form.getlist("file")) > 1:
        raise ApiError(400, "more than one file: send one clip per request", param="file")
    parts = MediaParts()
    if file is not None:
        suffix = Path(file.filename or "").suffix.lower()[:8]
        suffix = suffix if re.fullmatch(r"(\.[a-z0-9]{1,7})?", suffix) else ""
        kind = "audio" if (file.content_type or "").startswith("audio/") else "video"
        parts.add(kind, await file.read(), suffix or MIME_EXT.get((file.content_type or "").lower(), ""), param="file")
    try:
        task_list = resolve_tasks(tasks or "mer")
    except NanoEmoXError as e:
        raise ApiError(400, str(e), param="tasks") from None
    sampling = Sampling(temperature > 0, temperature or 1.0, top_p, seed)
    hist = _history(history)
    job, decode_s = await start_job(request, parts, lambda media, cancel: {"request": AnalysisRequest(
        media, transcript, hist, task_list, None, max_new_tokens, sampling, asr, None, cancel)})
    result = await result_of(job)
    result.timings["preprocess_s"] = round(result.timings["preprocess_s"] + decode_s, 4)
    return {"id": "analysis-" + uuid.uuid4().hex[:16], "object": "nanoemox.analysis", **result.to_dict()}


@router.post("/v1/chat/completions", responses={200: {"model": ChatCompletion, "description": "a completion, or an SSE stream of chunks"}, **ERRORS})
async def chat_completions(request: Request, body: ChatCompletionRequest):
    """OpenAI chat completions over the six tasks (media as message parts) or plain text chat."""
    inp = chat_inputs(body)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    on_text = (lambda text: loop.call_soon_threadsafe(events.put_nowait, ("delta", text))) if body.stream else None

    def make(media, cancel) -> dict[str, Any]:
        if inp.task == "chat":
            return {"messages": inp.messages, "control": RowControl(inp.budget or CHAT_DEFAULT_TOKENS, cancel, on_text), "sampling": inp.sampling}
        return {"request": AnalysisRequest(media, inp.transcript, inp.history, [inp.task], None, inp.budget, inp.sampling, inp.asr, on_text, cancel)}

    job, decode_s = await start_job(request, inp.media, make)
    cid, created, model_name = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time()), request.app.state.analyzer.name

    def final(value) -> tuple[str, str, dict[str, Any]]:
        if inp.task == "chat":
            return value.text, "length" if value.finish == "length" else "stop", {}
        value.timings["preprocess_s"] = round(value.timings["preprocess_s"] + decode_s, 4)
        finish = "length" if value.finish.get(inp.task) == "length" else "stop"
        return value.results[inp.task].raw, finish, {"nanoemox": extra_fields(inp.task, value)}

    if not body.stream:
        text, finish, more = final(await result_of(job))
        return {"id": cid, "object": "chat.completion", "created": created, "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}], **more}

    job.future.add_done_callback(lambda f: events.put_nowait(("end", f)))

    def chunk(delta: dict, finish: str | None = None, **more: Any) -> str:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more})

    async def stream():
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, value = await asyncio.wait_for(events.get(), max(0.0, job.deadline - time.monotonic()))
                if kind == "delta":
                    yield chunk({"content": value})
                    continue
                exc = value.exception() if not value.cancelled() else asyncio.CancelledError()
                if exc is not None:
                    yield sse_error(error_of(exc))
                else:
                    _, finish, more = final(value.result())
                    yield chunk({}, finish, **more)
                yield "data: [DONE]\n\n"
                return
        except asyncio.TimeoutError:
            job.cancel.set()
            yield sse_error(ApiError(504, "the request timed out (--timeout)", "timeout"))
            yield "data: [DONE]\n\n"
        finally:
            job.cancel.set()  # no-op once finished; stops this row's decoding when the client has gone

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _history(raw: str | None) -> list[dict[str, str]]:
    if raw in (None, ""):
        return []
    try:
        hist = json.loads(raw)
    except json.JSONDecodeError:
        raise ApiError(400, f"history={raw[:40]!r}: expected a JSON list of {{speaker, text}}", param="history") from None
    if not isinstance(hist, list) or not all(isinstance(h, dict) and "text" in h for h in hist):
        raise ApiError(400, f"history={raw[:40]!r}: expected a JSON list of {{speaker, text}}", param="history")
    return [{"speaker": str(h.get("speaker") or "Speaker"), "text": str(h["text"])} for h in hist]

