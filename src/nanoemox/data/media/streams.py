"""One demux pass (or one seek per sampled frame) over a container: the sampled video frames and the
whole audio track resampled to 16 kHz mono."""
from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from ...errors import MediaError
from .types import MediaConfig


def ff_msg(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(":")[0].strip() if msg else type(e).__name__


def fraction_float(x) -> float | None:
    try:
        return float(x) if x else None
    except (TypeError, ZeroDivisionError, ValueError):
        return None

_THREADED_MIN_PIXELS = 320 * 240


def _target_times(start: float, span: float, n: int) -> np.ndarray:
    return start + (np.arange(n) + 0.5) * (span / n)


def _mono_float(frame) -> np.ndarray | None:
    """A mono float frame's samples as a view of its buffer (what `to_ndarray` returns, without
    its per-frame stacking: ~20 us a frame, the cost of a small clip's audio), else None."""
    try:
        if frame.layout.nb_channels != 1 or frame.format.name not in ("flt", "fltp"):
            return None
        return np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples)
    except (AttributeError, ValueError):  # pragma: no cover - an unusual frame: the generic path
        return None


class _AudioSink:
    """Resample decoded audio frames to mono float at the target rate; stop at max_seconds."""

    def __init__(self, stream, cfg: MediaConfig):
        import av

        self.cfg = cfg
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
        self.passthrough: bool | None = None
        self.chunks: list[np.ndarray] = []
        self.n = 0
        self.limit = int(round(cfg.max_seconds * cfg.sample_rate))
        self.done = False
        self.capped = False
        self.start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0

    def add(self, frame) -> None:
        if self.done:
            return
        if self.passthrough is None:  # decided once per stream, on its first frame
            self.passthrough = self._is_target_format(frame)
        if self.passthrough and self._is_target_format(frame):
            self._push(frame)  # already mono float at the target rate: the resampler would only copy
            return
        self.passthrough = False
        for out in self.resampler.resample(frame):
            self._push(out)

    def _is_target_format(self, frame) -> bool:
        try:
            return frame.sample_rate == self.cfg.sample_rate and frame.format.name in ("flt", "fltp") and frame.layout.nb_channels == 1
        except AttributeError:  # pragma: no cover
            return False

    def _push(self, out) -> None:
        a = _mono_float(out)
        if a is None:
            a = out.to_ndarray().reshape(-1)
        if a.dtype != np.float32:
            a = a.astype(np.float32)
        self.chunks.append(a)
        self.n += a.size
        if self.n >= self.limit:
            self.done = True
            self.capped = True

    def finish(self) -> np.ndarray | None:
        if not self.done:
            try:
                for out in self.resampler.resample(None):
                    self._push(out)
            except Exception:  # pragma: no cover - flushing an empty resampler
                pass
        if not self.chunks:
            return None
        wav = np.concatenate(self.chunks)[: self.limit]
        return np.ascontiguousarray(wav, dtype=np.float32)


class _FramePicker:
    """Keep, for each target time, the decoded frame nearest to it (frames arrive in time order)."""

    def __init__(self, targets: np.ndarray | None, fps: float | None, start: float):
        self.targets = targets
        self.best: list[Any] = [None] * (0 if targets is None else len(targets))
        self.best_t = [math.inf] * len(self.best)
        self.best_d = [math.inf] * len(self.best)
        self.fps = fps or 25.0
        self.start = start
        self.n = 0
        self.last_t: float | None = None
        self.all_frames: list[Any] = []  # only when the span is unknown (kept small: see add)
        self.keep_every = 1

    def frame_time(self, frame) -> float:
        t = frame.time
        if t is None or (self.last_t is not None and t < self.last_t - 5.0):
            t = self.start + self.n / self.fps if self.last_t is None else self.last_t + 1.0 / self.fps
        return float(t)

    def add(self, frame) -> float:
        t = self.frame_time(frame)
        self.n += 1
        self.last_t = t
        if self.targets is None:
            # Unknown length: keep a uniform subsample of at most 64 frames (stride doubles).
            if (self.n - 1) % self.keep_every == 0:
                self.all_frames.append((t, frame))
                if len(self.all_frames) > 64:
                    self.all_frames = self.all_frames[::2]
                    self.keep_every *= 2
            return t
        for i, tt in enumerate(self.targets):
            d = abs(t - tt)
            if d < self.best_d[i]:
                self.best[i], self.best_t[i], self.best_d[i] = frame, t, d
        return t

    def finished(self) -> bool:
        """All targets are behind us (the next frames can only be farther away)."""
        return self.targets is not None and self.last_t is not None and self.last_t >= self.targets[-1] and self.best[-1] is not None

    def result(self, n_frames: int):
        if self.targets is None:
            if not self.all_frames:
                return None
            t0, t1 = self.all_frames[0][0], self.all_frames[-1][0]
            span = max(t1 - t0, 1e-6) + 1.0 / self.fps
            self.targets = _target_times(t0, span, n_frames)
            self.best = [None] * n_frames
            self.best_d = [math.inf] * n_frames
            self.best_t = [math.inf] * n_frames
            frames, self.all_frames = self.all_frames, []
            for t, f in frames:
                for i, tt in enumerate(self.targets):
                    d = abs(t - tt)
                    if d < self.best_d[i]:
                        self.best[i], self.best_t[i], self.best_d[i] = f, t, d
        if any(b is None for b in self.best):
            return None
        uniq: dict[int, int] = {}
        frames, times, index = [], [], []
        for f, t in zip(self.best, self.best_t):
            k = id(f)
            if k not in uniq:
                uniq[k] = len(frames)
                frames.append(f)
            index.append(uniq[k])
            times.append(t)
        return frames, times, index


def _configure_video(vs, cfg: MediaConfig, expected_frames: float | None = None) -> bool:
    """Frame-threaded decoding for pictures of at least `_THREADED_MIN_PIXELS`, one thread below;
    for clips with plenty of frames per sample, also skip decoding non-reference frames
    (h264/hevc B-frames nothing else depends on): the sampled frames then lie within a few frames
    of their targets, at a fraction of the decoding cost. Returns whether frames are skipped."""
    skipping = False
    ctx = vs.codec_context
    try:
        # Threads cost more than they save on small pictures (160x160: 4.2 vs 3.4 ms a clip with
        # frame threads; PyAV's default slice threads still cost 3.8 vs 3.3 ms): one thread there.
        if cfg.decode_threads or not ctx.width or ctx.width * ctx.height >= _THREADED_MIN_PIXELS:
            vs.thread_type = "AUTO"
        else:
            vs.thread_count = 1
        if cfg.decode_threads:
            vs.thread_count = cfg.decode_threads
    except Exception:  # pragma: no cover - some decoders refuse threading options
        pass
    if cfg.skip_nonref and expected_frames and expected_frames >= 6 * cfg.n_frames:
        try:
            vs.codec_context.skip_frame = "NONREF"
            skipping = True
        except Exception:  # pragma: no cover
            skipping = False
    return skipping


def decode_linear(container, vs, as_, v_start: float, v_span: float | None, cfg: MediaConfig, spath: str, lookahead: bool = True) -> dict:
    """One pass over the container. Clips with too few frames per sample to skip all
    non-reference frames (see `_configure_video`) are demuxed first when `lookahead` and
    `cfg.skip_nonref`: the packets' timestamps say which frames the picker will keep, and the
    non-reference frames among the others are not decoded. The kept frames are bit-identical
    (nothing is predicted from a non-reference frame); should a kept frame's time differ from its
    packet's, the pass is redone decoding every frame."""
    import av

    res = _new_result()
    streams = [s for s in (vs, as_) if s is not None]
    picker = None
    if vs is not None:
        fps = fraction_float(vs.average_rate) or fraction_float(vs.guessed_rate)
        res["skip_nonref"] = _configure_video(vs, cfg, v_span * fps if v_span and fps else None)
        targets = _target_times(v_start, v_span, cfg.n_frames) if v_span else None
        picker = _FramePicker(targets, fps, v_start)
    packets, demux_error, keep = None, None, None
    if lookahead and cfg.skip_nonref and picker is not None and picker.targets is not None and not res["skip_nonref"]:
        packets, demux_error = _demux_all(container, streams)
        keep = _kept_frames(packets, vs, picker.targets)
    skipping = False
    sink = _AudioSink(as_, cfg) if as_ is not None else None
    v_done = vs is None
    a_done = as_ is None
    v_limit = v_start + cfg.max_seconds
    n_err = 0

    def video_frames(frames):
        nonlocal v_done
        for fr in frames:
            if res["n_video"] == 0 and fr.width * fr.height > cfg.max_pixels:  # streams that declare no size
                raise MediaError(spath, f"resolution {fr.width}x{fr.height} is above max_pixels ({cfg.max_pixels})")
            t = picker.add(fr)
            res["video_end"] = t
            res["n_video"] += 1
            if t >= v_limit:
                res["capped"] = True
                v_done = True
                return
            if picker.finished():
                v_done = True
                return

    consumed = False
    try:
        for packet in packets if packets is not None else container.demux(*streams):
            if v_done and a_done:
                break
            st = packet.stream
            if st is vs:
                if v_done:
                    continue
                if keep is not None and packet.size and skipping != (packet.pts not in keep[0]):
                    skipping = not skipping
                    vs.codec_context.skip_frame = "NONREF" if skipping else "DEFAULT"
                try:
                    video_frames(packet.decode())
                except av.error.FFmpegError as e:
                    n_err += 1
                    res["errors"].append(f"video: {ff_msg(e)}")
                    if n_err > 100:
                        v_done = True
            elif st is as_:
                if a_done:
                    continue
                try:
                    for fr in packet.decode():
                        sink.add(fr)
                    if sink.done:
                        a_done = True
                        res["capped"] = True
                except av.error.FFmpegError as e:
                    n_err += 1
                    res["errors"].append(f"audio: {ff_msg(e)}")
                    if n_err > 100:
                        a_done = True
        else:
            consumed = True
    except av.error.FFmpegError as e:  # demuxing failed mid-file (truncated / corrupt)
        res["errors"].append(f"demux: {ff_msg(e)}")
    if demux_error is not None and consumed:  # the look-ahead pass met it: noted where the loop would have
        res["errors"].append(f"demux: {ff_msg(demux_error)}")
    # (demux ends with empty packets that already flush the decoders; a second flush says EOF)
    if vs is not None and not v_done:
        _flush(vs, video_frames, "video", res)
    if as_ is not None and not a_done:
        _flush(as_, lambda frames: [sink.add(fr) for fr in frames], "audio", res)
    if skipping:
        vs.codec_context.skip_frame = "DEFAULT"
    if keep is not None and picker.best_t != keep[1]:
        _redecode_video(container, vs, v_start, v_span, cfg, spath, res)
    elif picker is not None:
        res["chosen"] = picker.result(cfg.n_frames)
    if sink is not None:
        res["audio"] = sink.finish()
        res["capped"] = res["capped"] or sink.capped
    if res["errors"]:
        res["warnings"].append(f"{len(res['errors'])} decoding error(s), first: {res['errors'][0]}")
    return res


def _redecode_video(container, vs, v_start: float, v_span: float, cfg: MediaConfig, spath: str, res: dict) -> None:
    """The decoded frames' times were not the packets', so the look-ahead may have skipped a frame
    the picker wants: the video alone is decoded again, every frame (the audio of the first pass
    stands: a decoder restarted by a seek need not give the same samples)."""
    container.seek(0)
    lin = decode_linear(container, vs, None, v_start, v_span, cfg, spath, lookahead=False)
    res["errors"] = [e for e in res["errors"] if not e.startswith("video")] + [e for e in lin["errors"] if e.startswith("video")]
    res["chosen"], res["n_video"], res["video_end"] = lin["chosen"], lin["n_video"], lin["video_end"]
    res["capped"] = res["capped"] or lin["capped"]


def _demux_all(container, streams) -> tuple[list, Exception | None]:
    """Every packet of the streams, and the demuxing error that ended the pass early (or None)."""
    import av

    packets: list = []
    try:
        for packet in container.demux(*streams):
            packets.append(packet)
    except av.error.FFmpegError as e:
        return packets, e
    return packets, None


def _kept_frames(packets: list, vs, targets: np.ndarray) -> tuple[frozenset[int], list[float]] | None:
    """(pts, times) of the frames `_FramePicker` will keep: for each target the nearest frame, the
    earlier on a tie, with times computed as `av.Frame.time` does; None when a video packet has no
    timestamp."""
    tb = vs.time_base
    if not tb:
        return None
    pts = []
    for p in packets:
        if p.stream is vs and p.size:
            if p.pts is None:
                return None
            pts.append(int(p.pts))
    if not pts:
        return None
    pts.sort()
    times = [float(x) * tb.numerator / tb.denominator for x in pts]
    chosen = []
    for tt in targets:
        k = bisect.bisect_left(times, tt)  # times[k - 1] < tt <= times[k]
        if k == len(times) or (k > 0 and abs(times[k - 1] - tt) <= abs(times[k] - tt)):
            k -= 1
        while k > 0 and times[k - 1] == times[k]:  # the first of equal times, as the picker keeps
            k -= 1
        chosen.append(k)
    return frozenset(pts[k] for k in chosen), [times[k] for k in chosen]


def _flush(stream, consume, kind: str, res: dict) -> None:
    """Drain a decoder's last frames into `consume`; errors are noted in `res`."""
    import av

    try:
        consume(stream.decode(None))
    except av.error.EOFError:
        pass
    except (av.error.FFmpegError, ValueError) as e:
        res["errors"].append(f"{kind} flush: {ff_msg(e)}")


def _new_result() -> dict[str, Any]:
    return {"warnings": [], "errors": [], "capped": False, "chosen": None, "audio": None, "n_video": 0, "video_end": None}


def decode_seek(container, vs, as_, v_start: float, v_span: float, cfg: MediaConfig, spath: str) -> dict:
    """Long videos: an audio-only pass, then one seek per target frame."""
    import av

    res = _new_result()
    if as_ is not None:
        sink = _AudioSink(as_, cfg)
        try:
            for packet in container.demux(as_):
                try:
                    for fr in packet.decode():
                        sink.add(fr)
                except av.error.FFmpegError as e:
                    res["errors"].append(f"audio: {ff_msg(e)}")
                if sink.done:
                    break
        except av.error.FFmpegError as e:
            res["errors"].append(f"demux: {ff_msg(e)}")
        res["audio"] = sink.finish()
        res["capped"] = sink.capped
    _configure_video(vs, cfg)
    targets = _target_times(v_start, v_span, cfg.n_frames)
    fps = fraction_float(vs.average_rate) or 25.0
    frames, times = [], []
    for tt in targets:
        found = _seek_frame(container, vs, tt, fps, res)
        if found is None:
            break
        got, got_t = found
        frames.append(got)
        times.append(got_t)
        res["video_end"] = max(res["video_end"] or 0.0, got_t)
    if len(frames) == len(targets):
        # the last target sits half a segment before the end: report the declared span
        res["video_end"] = v_start + v_span - 1.0 / fps
        uniq: dict[int, int] = {}
        keep, index = [], []
        for f in frames:
            key = int(f.pts) if f.pts is not None else id(f)
            if key not in uniq:
                uniq[key] = len(keep)
                keep.append(f)
            index.append(uniq[key])
        res["chosen"] = (keep, times, index)
    else:  # seeking failed: fall back to a linear pass from the start
        try:
            container.seek(0)
        except av.error.FFmpegError:
            pass
        lin = decode_linear(container, vs, None, v_start, v_span, cfg, spath)
        res["chosen"], res["n_video"], res["video_end"] = lin["chosen"], lin["n_video"], lin["video_end"]
        res["errors"].extend(lin["errors"])
    if res["errors"]:
        res["warnings"].append(f"{len(res['errors'])} decoding error(s), first: {res['errors'][0]}")
    return res


def _seek_frame(container, vs, tt: float, fps: float, res: dict):
    """(frame, time) of the frame nearest `tt`, reached by seeking to the key frame before it and
    decoding forward; None when seeking or decoding fails (noted in `res`)."""
    import av

    tb = vs.time_base
    got = None
    try:
        container.seek(int(tt / tb), stream=vs, backward=True, any_frame=False)
        vs.codec_context.flush_buffers()
        prev = None
        for packet in container.demux(vs):
            for fr in packet.decode():
                res["n_video"] += 1
                t = fr.time if fr.time is not None else tt
                if t >= tt - 0.5 / fps:
                    got = fr if prev is None or abs(t - tt) <= abs(prev[0] - tt) else prev[1]
                    got_t = t if got is fr else prev[0]
                    break
                prev = (t, fr)
            if got is not None:
                break
        if got is None and prev is not None:
            got, got_t = prev[1], prev[0]
    except av.error.FFmpegError as e:
        res["errors"].append(f"seek: {ff_msg(e)}")
    return None if got is None else (got, got_t)
