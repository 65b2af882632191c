"""The model worker: one thread runs the model, on batches of requests gathered while it was busy.

Admission is bounded: at most `max_batch` requests run and `queue_size` wait (decoding their
media included); more get 503 at once. The thread takes the first waiting job, then any others
waiting, or arriving within `batch_wait_ms`, up to `max_batch`. Requests admitted but still
decoding their media are companions too: while any are, it waits for them up to `gather_ms`
(a burst of uploads finishes decoding over a few hundred ms; without this the first one or two
to finish ran as a batch of their own and the rest waited a whole batch for them). It drops
jobs cancelled or past their deadline; and answers the rest with `Analyzer.analyze_many` (one encoder batch, one
generate per sampling group) and `Analyzer.chat_many`. A job's slot is freed only when the job
has really finished, so the bound stays true. A request that times out or whose client leaves
sets its cancel flag: its rows stop at the next token, the others in its batch carry on.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..inference.analyzer import AnalysisRequest
from ..inference.generation import RowControl, Sampling
from .errors import ApiError, Cancelled


@dataclass
class Job:
    """One request for the model: an analysis (`request`) or a text chat (`messages`)."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    cancel: threading.Event
    deadline: float
    request: AnalysisRequest | None = None
    messages: list[dict[str, str]] | None = None
    control: RowControl | None = None
    sampling: Sampling = field(default_factory=Sampling)
    finished: bool = False

    def settle(self, value: Any) -> None:
        """Hand the result (or the exception) to the request's event loop."""
        def done() -> None:
            if self.future.done():
                return
            if isinstance(value, BaseException):
                self.future.set_exception(value)
                self.future.exception()  # retrieved: a gone client's error is expected, not lost
            else:
                self.future.set_result(value)
        self.loop.call_soon_threadsafe(done)


class BatchWorker:
    def __init__(self, analyzer, max_batch: int = 8, batch_wait_ms: float = 5.0, queue_size: int = 8, gather_ms: float = 1000.0):
        self.analyzer = analyzer
        self.max_batch, self.batch_wait_s = max(1, int(max_batch)), max(0.0, batch_wait_ms) / 1000.0
        self.gather_s = max(0.0, gather_ms) / 1000.0
        self.capacity = max(0, int(queue_size)) + self.max_batch
        self.active = 0  # admitted and not finished (waiting, decoding media or running)
        self.preparing = 0  # admitted and not yet queued (decoding media)
        self.served = 0
        self.cancelled = 0  # jobs dropped or stopped because their request timed out or went away
        self.sizes: Counter[int] = Counter()  # batch size -> batches run
        self.last_batch = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="nanoemox-model", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ admission (event loop side)
    def admit(self) -> None:
        with self._lock:
            if self.active >= self.capacity:
                raise ApiError(503, f"server busy: {self.active} request(s) queued or running (capacity {self.capacity}); retry shortly",
                               "server_busy", headers={"Retry-After": "1"})
            self.active += 1
            self.preparing += 1

    def release(self) -> None:
        with self._lock:
            self.active -= 1
            self.served += 1

    def withdraw(self) -> None:
        """An admitted request that will never be queued (bad media, timeout, gone client)."""
        with self._lock:
            self.preparing -= 1
        self.release()

    def put(self, job: Job) -> None:
        """Queue an admitted job; its slot is released when the worker has finished it."""
        with self._lock:
            self.preparing -= 1
        self._queue.put(job)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            batches = sum(self.sizes.values())
            return {"max_batch": self.max_batch, "batch_wait_ms": self.batch_wait_s * 1000, "gather_ms": self.gather_s * 1000, "batches": batches,
                    "sizes": {str(k): v for k, v in sorted(self.sizes.items())}, "last": self.last_batch,
                    "largest": max(self.sizes, default=0), "cancelled": self.cancelled,
                    "mean": round(sum(k * v for k, v in self.sizes.items()) / batches, 3) if batches else 0.0}

    def shutdown(self) -> None:
        self._queue.put(None)

    # ------------------------------------------------------------ the model thread
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._gather(first)
            try:
                self._run(batch)
            except Exception as e:  # never leave a request waiting or a slot taken
                for job in batch:
                    if not job.finished:
                        self._finish(job, e)

    def _gather(self, first: Job) -> list[Job]:
        """`first` and its companions: queued jobs, jobs queued within `batch_wait_ms`, and while
        admitted jobs are still decoding their media, those too (up to `gather_ms` after `first`)."""
        batch = [first]
        t0 = time.monotonic()
        while len(batch) < self.max_batch:
            with self._lock:
                decoding = self.preparing > 0
            now = time.monotonic()
            until = t0 + max(self.batch_wait_s, self.gather_s if decoding else 0.0)
            try:
                if now >= until:
                    job = self._queue.get_nowait()
                else:  # short polls while waiting for decoders: a withdrawn request queues nothing
                    job = self._queue.get(timeout=min(until - now, 0.02) if decoding else until - now)
            except queue.Empty:
                if decoding and time.monotonic() < until:
                    continue
                break
            if job is None:
                self._queue.put(None)  # shut down after this batch
                break
            batch.append(job)
        return batch

    def _run(self, batch: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for job in batch:
            if job.cancel.is_set() or now >= job.deadline:
                self._finish(job, Cancelled())
            else:
                live.append(job)
        if not live:
            return
        with self._lock:
            self.sizes[len(live)] += 1
            self.last_batch = len(live)
        analyses = [j for j in live if j.request is not None]
        chats = [j for j in live if j.request is None]
        if analyses:
            try:
                results = self.analyzer.analyze_many([j.request for j in analyses], return_exceptions=True)
            except Exception as e:  # a failure of the batch itself: every member is told
                results = [e] * len(analyses)
            for job, res in zip(analyses, results):
                self._finish(job, res)
        groups: dict[tuple, list[Job]] = {}
        for k, job in enumerate(chats):
            groups.setdefault(job.sampling.group_key(k), []).append(job)
        for jobs in groups.values():
            try:
                outs = self.analyzer.chat_many([j.messages for j in jobs], [j.control for j in jobs], jobs[0].sampling)
            except Exception as e:
                outs = [e] * len(jobs)
            for job, out in zip(jobs, outs):
                self._finish(job, out)

    def _finish(self, job: Job, value: Any) -> None:
        job.finished = True
        if not isinstance(value, BaseException) and job.cancel.is_set():
            value = Cancelled()
        if isinstance(value, Cancelled):
            with self._lock:
                self.cancelled += 1
        job.settle(value)
        self.release()
