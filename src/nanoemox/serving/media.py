"""Request media: data: URLs and base64 decoded to bytes, written to a private temp folder and
decoded there (never a server path, never a fetched URL); a picture/video and a separate audio
part are merged by the `Analyzer`'s media helpers."""
from __future__ import annotations

import base64
import binascii
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import MediaError
from .errors import ApiError

_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,(?P<data>.*)$", re.DOTALL)
MIME_EXT = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv", "video/ogg": ".ogv",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/webm": ".webm", "audio/ogg": ".ogg", "audio/flac": ".flac", "audio/mp4": ".m4a", "audio/x-m4a": ".m4a",
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "image/bmp": ".bmp",
}
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".opus")


@dataclass
class MediaParts:
    """Request media as (bytes, file suffix): at most one picture/video and one audio."""

    visual: tuple[bytes, str] | None = None
    audio: tuple[bytes, str] | None = None

    def add(self, kind: str, data: bytes, suffix: str, param: str = "messages") -> None:
        if not data:
            raise ApiError(400, f"empty {kind} data", param=param)
        slot = "audio" if kind == "audio" else "visual"
        if getattr(self, slot) is not None:
            raise ApiError(400, f"more than one {'audio' if slot == 'audio' else 'image/video'} part: send one clip per request", param=param)
        setattr(self, slot, (data, suffix))

    def __bool__(self) -> bool:
        return self.visual is not None or self.audio is not None


def decode_data_url(url: str, param: str) -> tuple[bytes, str]:
    """A data: URL -> (bytes, suffix). Any other scheme is refused: the server never fetches URLs
    and never opens its own files on a request's behalf."""
    if not isinstance(url, str) or not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if isinstance(url, str) and ":" in url else "that"
        raise ApiError(400, f"only data: URLs are accepted ({scheme} URLs are not fetched and server paths are never read); upload the bytes instead", param=param)
    m = _DATA_URL_RE.match(url)
    if not m:
        raise ApiError(400, "malformed data: URL", param=param)
    if m.group("b64"):
        data = b64(m.group("data"), param)
    else:
        from urllib.parse import unquote_to_bytes

        data = unquote_to_bytes(m.group("data"))
    return data, MIME_EXT.get((m.group("mime") or "").lower(), "")


def b64(text: str, param: str) -> bytes:
    try:
        return base64.b64decode("".join(str(text).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid base64 data", param=param) from None


def decode_parts(parts: MediaParts, analyzer, max_clip_seconds: float):
    """Bytes -> one `MediaInput` (or None), in a private temp folder removed afterwards."""
    if not parts:
        return None
    from ..data.media import media_from_arrays

    with tempfile.TemporaryDirectory(prefix="nanoemox-req-") as tmp:
        def load(data: bytes, suffix: str, name: str):
            path = Path(tmp) / (name + (suffix or ".bin"))
            path.write_bytes(data)
            media = analyzer.load_media(path, max_seconds=max_clip_seconds + 1.0)
            declared = media.info.get("duration_s") or media.duration_s or 0.0
            if declared > max_clip_seconds or any("max_seconds" in w for w in media.warnings):
                raise ApiError(413, f"clip is {declared:.1f} s long; this server accepts at most {max_clip_seconds:g} s (--max-clip-seconds)",
                               "clip_too_long", param="file")
            media.path = "upload" + (suffix or "")
            return media

        visual = load(*parts.visual, "visual") if parts.visual else None
        audio = load(*parts.audio, "audio") if parts.audio else None
    if audio is not None and audio.audio is None:
        raise MediaError("audio part", "holds no audio stream")
    if visual is None or audio is None:
        return visual if audio is None else audio
    sound = media_from_arrays(waveform=audio.audio, cfg=analyzer.media_config())
    return replace(visual, audio=sound.audio, audio_clips=sound.audio_clips, audio_clip_mask=sound.audio_clip_mask,
                   duration_s=max(visual.duration_s or 0.0, sound.duration_s or 0.0), warnings=visual.warnings + sound.warnings)
