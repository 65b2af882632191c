"""Audio/video containers: open, choose the streams, describe them, decode (linear pass or seeks,
see `streams`), check for truncation, and assemble the `MediaInput`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import MediaError
from .audio import finish_audio
from .frames import finish_video, to_work
from .streams import decode_linear, decode_seek, ff_msg, fraction_float
from .types import MediaConfig, MediaInput, looks_like_text, sniff


def _open_container(p: Path, head: bytes):
    import av

    spath = str(p)
    try:
        return av.open(spath, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        if looks_like_text(head) or sniff(head) is None:
            raise MediaError(spath, "not a media file (content not recognised)") from None
        raise MediaError(spath, f"corrupt or truncated file ({ff_msg(e)})") from None
    except av.error.FFmpegError as e:
        raise MediaError(spath, f"cannot open ({ff_msg(e)})") from None


def _first_decodable(streams, kind: str, bad: list[str]):
    """The first stream whose codec FFmpeg can decode; the others are noted in `bad`."""
    for stream in streams:
        ok, name = _codec_ok(stream)
        if ok:
            return stream
        bad.append(f"{kind} codec {name!r}")
    return None


def _codec_ok(stream) -> tuple[bool, str]:
    """Whether FFmpeg can decode this stream; (ok, codec name)."""
    import av

    try:
        ctx = stream.codec_context
    except Exception:  # pragma: no cover - PyAV refuses streams without a decoder
        return False, "unknown"
    if ctx is None:
        return False, "unknown"
    name = getattr(ctx, "name", None) or "unknown"
    if name in ("none", "unknown"):
        return False, name
    try:
        av.codec.Codec(name, "r")
    except Exception:
        return False, name
    return True, name


def _codec_name(ctx) -> str:
    """The codec's canonical name ("mp3", not the decoder's "mp3float")."""
    try:
        return ctx.codec.canonical_name or ctx.name
    except Exception:
        return ctx.name


def load_av(p: Path, cfg: MediaConfig, head: bytes) -> MediaInput:
    import av

    spath = str(p)
    container = _open_container(p, head)
    try:
        return _decode_container(container, p, cfg, head)
    except MediaError:
        raise
    except av.error.FFmpegError as e:
        raise MediaError(spath, f"corrupt or undecodable ({ff_msg(e)})") from None
    finally:
        container.close()


def _scan_video_span(p: Path, head: bytes, stream_index: int, max_seconds: float) -> float | None:
    """Video length from packet timestamps (no decoding), for containers that do not declare it."""
    import av

    container = _open_container(p, head)
    try:
        vs = container.streams[stream_index]
        tb = vs.time_base
        start = float(vs.start_time * tb) if vs.start_time is not None and tb else 0.0
        end = None
        n = 0
        for pkt in container.demux(vs):
            n += 1
            if pkt.pts is not None and tb:
                t = float((pkt.pts + (pkt.duration or 0)) * tb)
                end = t if end is None else max(end, t)
                if end - start > max_seconds:
                    break
        if end is None:
            return None
        return end - start
    except av.error.FFmpegError:
        return None
    finally:
        container.close()


def _stream_duration(stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:  # Matroska: "00:00:01.600000000"
        try:
            hh, mm, ss = str(tag).split(":")
            return int(hh) * 3600 + int(mm) * 60 + float(ss)
        except ValueError:
            return None
    return None


def _decode_container(container, p: Path, cfg: MediaConfig, head: bytes) -> MediaInput:
    spath = str(p)
    vs, as_, info, warnings = _describe_streams(container, p, cfg)
    v_start, v_span, v_span_own, capped = _video_span(vs, info, p, head, cfg)
    if vs is not None and v_span and v_span > cfg.seek_threshold_s and _seekable(container):
        res = decode_seek(container, vs, as_, v_start, v_span, cfg, spath)
    else:
        res = decode_linear(container, vs, as_, v_start, v_span, cfg, spath)
    warnings.extend(res["warnings"])
    capped = capped or res["capped"]
    if capped:
        warnings.append(f"decoded only the first {cfg.max_seconds:g} s (max_seconds)")

    out = MediaInput(path=spath, info=info, warnings=warnings)
    if vs is not None:
        _video_result(out, res, v_start, v_span, v_span_own, capped, cfg)
    if as_ is not None:
        _audio_result(out, res, vs is not None, capped, cfg)
    spans = []
    if out.frames is not None and v_span:
        spans.append(v_span)
    elif out.frames is not None and res["video_end"] is not None:
        spans.append(res["video_end"] - v_start)
    if out.audio is not None:
        spans.append(len(out.audio) / cfg.sample_rate)
    out.duration_s = max(spans) if spans else info["duration_s"]
    return out


def _describe_streams(container, p: Path, cfg: MediaConfig) -> tuple[Any, Any, dict[str, Any], list[str]]:
    """The first decodable video and audio streams and the `info` dict that describes them."""
    spath = str(p)
    info: dict[str, Any] = {"container": container.format.name if container.format else None}
    vstreams = [s for s in container.streams.video if not _is_attached_pic(s)]
    astreams = list(container.streams.audio)
    if not vstreams and not astreams:
        raise MediaError(spath, "no usable stream (no audio or video track)")
    warnings: list[str] = []
    bad: list[str] = []
    vs = _first_decodable(vstreams, "video", bad)
    as_ = _first_decodable(astreams, "audio", bad)
    if vs is None and as_ is None:
        raise MediaError(spath, "unsupported codec: " + ", ".join(bad))
    if bad:
        warnings.append("ignored undecodable stream(s): " + ", ".join(bad))
    if info["container"] == "wav":
        why = _wav_truncated(p)
        if why:
            raise MediaError(spath, why)
    if vs is not None:
        ctx = vs.codec_context
        w, h = int(ctx.width or 0), int(ctx.height or 0)
        if w * h > cfg.max_pixels:
            raise MediaError(spath, f"resolution {w}x{h} is above max_pixels ({cfg.max_pixels})")
        fps = fraction_float(vs.average_rate) or fraction_float(vs.guessed_rate) or fraction_float(vs.base_rate)
        info["video"] = {
            "codec": _codec_name(ctx),
            "width": w,
            "height": h,
            "fps": fps,
            "pix_fmt": getattr(ctx.format, "name", None) if ctx.format else None,
            "frames": int(vs.frames or 0) or None,
            "duration_s": _stream_duration(vs),
        }
    if as_ is not None:
        actx = as_.codec_context
        info["audio"] = {
            "codec": _codec_name(actx),
            "sample_rate": int(actx.sample_rate or 0) or None,
            "channels": int(getattr(actx, "channels", 0) or (actx.layout.nb_channels if actx.layout else 0)) or None,
            "layout": actx.layout.name if actx.layout else None,
            "duration_s": _stream_duration(as_),
            "resampled_rate": cfg.sample_rate,
        }
    info["duration_s"] = container.duration / 1_000_000.0 if container.duration else None
    return vs, as_, info, warnings


def _video_span(vs, info: dict[str, Any], p: Path, head: bytes, cfg: MediaConfig) -> tuple[float, float | None, bool, bool]:
    """(start, span, whether the span is the video's own, capped by max_seconds). The span is the
    video's own duration, else frames / fps, else a packet scan, else the container's duration
    (which may include a longer audio track)."""
    v_start, v_span, v_span_own = 0.0, None, False
    if vs is not None:
        v_start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
        v_span = info["video"]["duration_s"]
        if not v_span and info["video"]["frames"] and info["video"]["fps"]:
            v_span = info["video"]["frames"] / info["video"]["fps"]
        if not v_span:
            v_span = _scan_video_span(p, head, vs.index, cfg.max_seconds)
        v_span_own = bool(v_span)
        if not v_span:
            v_span = info["duration_s"]
    capped = False
    if v_span:
        capped = v_span > cfg.max_seconds
        v_span = min(v_span, cfg.max_seconds)
    return v_start, v_span, v_span_own, capped


def _video_result(out: MediaInput, res: dict, v_start: float, v_span: float | None, v_span_own: bool, capped: bool, cfg: MediaConfig) -> None:
    spath, info = out.path, out.info
    chosen = res["chosen"]
    if chosen is None:
        raise MediaError(spath, f"corrupt or truncated: no video frame could be decoded{_err_suffix(res)}")
    info["video"]["frames_decoded"] = res["n_video"]
    got = res["video_end"] - v_start if res["video_end"] is not None else 0.0
    w = _check_truncated(spath, v_span, got, info["video"]["fps"], capped, res, warn=v_span_own)
    if w:
        out.warnings.append(w)
    frames_list, times, index = chosen
    images = [to_work(f) for f in frames_list]
    out.frame_times = np.asarray([t - v_start for t in times], dtype=np.float64)
    out.frames_repeated = cfg.n_frames - len(images)
    finish_video(out, images, index, cfg)
    if info["video"]["width"] == 0:  # a stream that declares no size
        info["video"]["height"], info["video"]["width"] = frames_list[0].height, frames_list[0].width


def _audio_result(out: MediaInput, res: dict, has_video: bool, capped: bool, cfg: MediaConfig) -> None:
    spath, info = out.path, out.info
    wav = res["audio"]
    if wav is None or wav.size == 0:
        if out.frames is None or res["errors"]:
            raise MediaError(spath, f"corrupt or truncated: no audio could be decoded{_err_suffix(res)}")
        out.warnings.append("audio stream holds no samples; using the video only")
        info["audio"]["decoded"] = False
        return
    adur_decl = info["audio"]["duration_s"] or (info["duration_s"] if not has_video else None)
    if adur_decl:
        w = _check_truncated(spath, min(adur_decl, cfg.max_seconds), len(wav) / cfg.sample_rate, None, capped, res, warn=not has_video)
        if w:
            out.warnings.append(w)
    finish_audio(out, wav, cfg)


def _err_suffix(res) -> str:
    return f" ({res['errors'][0]})" if res.get("errors") else ""


def _check_truncated(spath: str, expected: float | None, got: float, fps: float | None, capped: bool, res, warn: bool = True) -> str | None:
    """A stream that stops well short of its declared length is a truncated file: an error when
    less than half of it decodes, else a warning (returned) when a noticeable part is missing."""
    if not expected or capped:
        return None
    frame = 1.0 / fps if fps else 0.0
    have = max(got, 0.0) + frame
    missing = expected - have
    if missing > 0.25 and have < 0.5 * expected:
        raise MediaError(spath, f"truncated or corrupt: decoded {max(got, 0):.2f} s of the declared {expected:.2f} s{_err_suffix(res)}")
    if warn and missing > max(0.5, 0.25 * expected):
        return f"stream ends early: decoded {max(got, 0):.2f} s of the declared {expected:.2f} s"
    return None


def _wav_truncated(p: Path) -> str | None:
    """WAV files carry their data size in the header; FFmpeg silently reads what is there."""
    import struct

    try:
        with open(p, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = p.stat().st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    have = size - pos - 8
                    if clen not in (0, 0xFFFFFFFF) and have < 0.9 * clen:
                        return f"truncated WAV: {have} of {clen} data bytes present"
                    return None
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return None
    return None


def _is_attached_pic(stream) -> bool:
    try:
        disp = stream.disposition
        import av

        return bool(disp & av.stream.Disposition.attached_pic)
    except Exception:
        return False


def _seekable(container) -> bool:
    name = container.format.name if container.format else ""
    return any(k in name for k in ("mp4", "mov", "matroska", "webm", "avi", "flv"))
