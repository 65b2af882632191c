"""Server: 16 concurrent clients POSTing a clip to /v1/analyze (task mer) on loopback, served by
the batching model worker, vs the same 16 `Analyzer.analyze` calls made one after another in
this process; latency percentiles of the served requests. Both sides run with a fresh process's
thread pools (the server subprocess has them; this process gets them back after generating the
clips, which limits it to one thread), i.e. what `nanoemox analyze` and `nanoemox serve` use."""
from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import Context, Table, ratios, spread, target

TITLE = "server: 16 concurrent clients on loopback (batching worker) vs 16 sequential in-process calls"
CLIENTS = 16
SERVER_CODE = "import sys; from nanoemox.cli import main; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(preset: str, port: int, log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", SERVER_CODE, "serve", "--preset", preset, "--port", str(port), "--device", "cpu",
           "--queue-size", str(4 * CLIENTS), "--max-batch", str(CLIENTS), "--timeout", "600", *extra]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not become healthy within 300 s")


async def burst(url: str, clip: bytes, transcript: str) -> tuple[float, list[float]]:
    """CLIENTS concurrent clients, one request each; (seconds, latencies)."""
    import httpx

    latencies: list[float] = []

    async def client(c: httpx.AsyncClient) -> None:
        t0 = time.perf_counter()
        r = await c.post(url, files={"file": ("clip.mp4", clip, "video/mp4")}, data={"tasks": "mer", "transcript": transcript})
        if r.status_code != 200:  # say what the server said (its log goes with the run's temporary folder)
            raise RuntimeError(f"POST /v1/analyze answered {r.status_code}: {r.text[:400]}")
        latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=CLIENTS)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(CLIENTS)))
        return time.perf_counter() - t0, latencies


def run(ctx: Context) -> list[Table]:
    import httpx

    from nanoemox.inference.analyzer import Analyzer

    from .media import _fresh_threads

    sample = ctx.corpus()["samples"][0]
    threads = _fresh_threads()  # generating the corpus left this process at one thread
    path = Path(sample.media_path())
    clip = path.read_bytes()
    port = _free_port()
    proc = start_server(ctx.preset, port, ctx.workdir / "server.log")
    try:
        analyzer = Analyzer.from_preset(ctx.preset, device="cpu")
        url = f"http://127.0.0.1:{port}/v1/analyze"
        asyncio.run(burst(url, clip, sample.transcript))  # warm-up
        analyzer.analyze(path, transcript=sample.transcript, tasks="mer")
        before = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["batching"]
        burst_s, inproc_s, lat, single = [], [], [], []
        rounds = max(3, ctx.repeats // 2)
        for r in range(rounds):  # interleaved: server burst, then the same work in process (order flips)
            def server_round() -> None:
                s, ls = asyncio.run(burst(url, clip, sample.transcript))
                burst_s.append(s)
                lat.extend(ls)

            def local_round() -> None:
                t0 = time.perf_counter()
                for _ in range(CLIENTS):
                    t = time.perf_counter()
                    analyzer.analyze(path, transcript=sample.transcript, tasks="mer")
                    single.append(time.perf_counter() - t)
                inproc_s.append(time.perf_counter() - t0)

            for fn in ((server_round, local_round) if r % 2 == 0 else (local_round, server_round)):
                fn()
        after = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["batching"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    thr = ratios(inproc_s, burst_s)  # (requests / burst_s) / (requests / inproc_s)
    rps = [CLIENTS / s for s in burst_s]
    q = statistics.quantiles(lat, n=20)
    p50, p95 = statistics.median(lat), q[18]
    one = statistics.median(single)
    sizes = {k: after["sizes"].get(k, 0) - before["sizes"].get(k, 0) for k in after["sizes"]}
    sizes = {k: v for k, v in sizes.items() if v}
    t = Table(TITLE, ["quantity", "value", "relative to in-process analyze"])
    t.rows.append([f"requests/s ({CLIENTS} clients, 1 request each per round)", spread(rps, "{:.2f}"),
                   f"throughput ratio {spread(thr, unit='x')}, {target(statistics.median(thr), 3, '>=')}"])
    t.rows.append(["latency p50", f"{p50:.3f} s", f"{p50 / one:.1f}x one in-process call ({one:.3f} s)"])
    t.rows.append(["latency p95", f"{p95:.3f} s", f"{p95 / one:.1f}x one in-process call"])
    t.rows.append(["batches run (size: count), timed rounds", ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items(), key=lambda kv: int(kv[0]))), "-"])
    t.notes.append(f"`nanoemox serve --preset {ctx.preset} --max-batch {CLIENTS}` in a subprocess on 127.0.0.1 (batch wait 5 ms; "
                   "the worker also waits, up to --gather-ms 1000, for admitted uploads still decoding their media), "
                   f"multipart POST /v1/analyze (task mer, default 32-token budget, one {len(clip) // 1024} KiB SynthAffect mp4 + "
                   f"transcript) from {CLIENTS} concurrent httpx clients; {rounds} rounds, interleaved with {CLIENTS} sequential "
                   "Analyzer.analyze calls on the same clip in this process (media decoding included on both sides). Untrained "
                   "weights never emit the end token, so every answer runs its full budget on both sides. Batch sizes are the "
                   "worker's own counts from /healthz. Latencies include decoding the upload and waiting for the batch")
    t.notes.append(f"thread pools on both sides as in a fresh process ({threads}); the server subprocess decodes uploads "
                   "in 2 threads beside its model thread")
    return [t]
