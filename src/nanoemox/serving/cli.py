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
    p.add_argument("--asr", action="store_true", help="transcribe speech when a request brings no transcript")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..inference.analyzer import Analyzer
    from .app import ServerSettings, create_app

    if args.queue_size < 0 or args.max_upload_mb <= 0 or args.max_clip_seconds <= 0 or args.timeout <= 0:
        raise ConfigError("--queue-size must be >= 0; --max-upload-mb, --max-clip-seconds and --timeout must be positive")
    analyzer = Analyzer.load(model=args.model, preset=args.preset, device=args.device)
    settings = ServerSettings(api_key=args.api_key, max_upload_mb=args.max_upload_mb, max_clip_seconds=args.max_clip_seconds,
                              timeout_s=args.timeout, queue_size=args.queue_size, asr=args.asr)
    app = create_app(analyzer, settings)
    print(f"nanoemox serve: {analyzer.name} on http://{args.host}:{args.port}/ (OpenAI base_url http://{args.host}:{args.port}/v1)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
