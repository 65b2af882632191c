"""`nanoemox serve`: the HTTP server (OpenAI-compatible chat, multipart analysis, web page)."""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve the model over HTTP (OpenAI-compatible API + web page)",
                              description="Serve a model: POST /v1/analyze, POST /v1/chat/completions, GET /healthz, GET /v1/models, and a web page at /.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="a trained model folder (default: the demo model)")
    g.add_argument("--preset", choices=("tiny", "small", "paper"), help="an untrained preset model (fixed seed)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest request body (default 25 MB)")
    p.add_argument("--max-clip-seconds", type=float, default=60.0, help="longest clip accepted (default 60 s)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request deadline in seconds (default 120)")
    p.add_argument("--queue-size", type=int, default=8, help="requests that may wait for the model; more get 503 (default 8)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together at most (default 8; 1 = no batching)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long an idle model waits for companions of a request (default 5 ms)")
    p.add_argument("--gather-ms", type=float, default=1000.0,
                   help="how long it waits longer while admitted requests are still decoding their media (default 1000 ms)")
    p.add_argument("--quantize", choices=("int8",), help="int8: weight-only int8 language model (CPU only)")
    p.add_argument("--asr", action="store_true", help="transcribe speech when a request brings no transcript")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..inference.analyzer import Analyzer
    from .app import ServerSettings, create_app

    from pydantic import ValidationError

    try:
        settings = ServerSettings(api_key=args.api_key, max_upload_mb=args.max_upload_mb, max_clip_seconds=args.max_clip_seconds,
                                  timeout_s=args.timeout, queue_size=args.queue_size, max_batch=args.max_batch,
                                  batch_wait_ms=args.batch_wait_ms, gather_ms=args.gather_ms, asr=args.asr)
    except ValidationError as e:
        err = e.errors()[0]
        flag = {"timeout_s": "timeout"}.get(str(err["loc"][0]), str(err["loc"][0])).replace("_", "-")
        raise ConfigError(f"--{flag} {err['input']!r}: {err['msg']}") from None
    analyzer = Analyzer.load(model=args.model, preset=args.preset, device=args.device, quantize=args.quantize)
    app = create_app(analyzer, settings)
    print(f"nanoemox serve: {analyzer.name} on http://{args.host}:{args.port}/ (OpenAI base_url http://{args.host}:{args.port}/v1)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
