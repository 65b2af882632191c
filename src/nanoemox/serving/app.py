"""The HTTP server, assembled: an OpenAI-compatible chat endpoint, a multipart analysis endpoint,
a web page, around one loaded `Analyzer`.

Endpoints (schemas at /docs)
- `GET /` the web page (static files in ./static, no build step, no CDN).
- `GET /healthz` liveness, queue state and batch sizes (no key needed). `GET /v1/models` the model.
- `POST /v1/analyze` multipart: `file` (video / audio / image, optional), `tasks` ("mer,erg" or
  "all"), `transcript`, `history` (JSON list of {speaker, text}), `asr`, `max_new_tokens`,
  `temperature` (0 = greedy), `top_p`, `seed` -> the JSON of `AnalysisResult.to_dict()`.
- `POST /v1/chat/completions` (OpenAI wire format, `stream: true` for SSE). Media come as message
  parts: `input_audio` {data: base64, format}, `image_url` / `video_url` {url: data: URL}, or
  `file` {file_data: data: URL or base64, filename}; at most one picture/video and one audio.
  The task and transcript rules are in `openai.chat_inputs`; the reply's content is the model's
  raw answer, the parsed fields, gate and timings ride along in an extra `nanoemox` object.

Rooms: `schema` (settings and request/response models), `routes` (the handlers), `worker` (the
batching model thread), `media` (uploads and data: URLs), `openai` (chat request -> task inputs),
`errors` (error JSON, body limit, one-line validation messages).

Limits: request bytes (`max_upload_mb`, 413), clip duration (`max_clip_seconds`, 413), a
per-request deadline (`timeout_s`, 504; decoding of that request stops at the next token), a
bounded queue (503 when full, see `worker`). With `api_key` every /v1 route wants
`Authorization: Bearer KEY` (401), checked before the body is read. Unknown request fields are a
400 naming the field and the one probably meant. Requests never name server-side files: only
uploads and data: URLs are read. Unusable media are a 422 with the decoder's reason.
"""
from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError, BodyLimitMiddleware, BodyTooLarge, validation_error
from .routes import router
from .schema import ServerSettings
from .worker import BatchWorker

STATIC_DIR = Path(__file__).parent / "static"


class KeyMiddleware:
    """With an API key set, /v1 routes want `Authorization: Bearer KEY` before anything is read."""

    def __init__(self, app, settings: ServerSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        key = self.settings.api_key
        if scope["type"] == "http" and key and scope.get("path", "").startswith("/v1/"):
            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
                err = ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error",
                               headers={"WWW-Authenticate": "Bearer"})
                return await err.response()(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(analyzer, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app around a loaded `Analyzer`."""
    settings = settings or ServerSettings()
    worker = BatchWorker(analyzer, settings.max_batch, settings.batch_wait_ms, settings.queue_size, settings.gather_ms)
    decoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nanoemox-decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        worker.shutdown()
        decoders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="nanoemox", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan,
                  description="Multimodal affective analysis: six tasks over a clip, OpenAI-compatible chat.")
    app.state.analyzer, app.state.settings, app.state.worker, app.state.decoders = analyzer, settings, worker, decoders
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_bytes)
    app.add_middleware(KeyMiddleware, settings=settings)  # added last: runs first

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        type_ = "request_too_large" if isinstance(exc, BodyTooLarge) else "http_error"
        return ApiError(exc.status_code, str(exc.detail), type_, headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return validation_error(list(exc.errors()), getattr(exc, "body", None)).response()

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    return app
