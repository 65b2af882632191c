"""OpenAI chat request -> what the model is asked (task, transcript, history, media), and the
response objects (completion, SSE chunks)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.schema import TASKS
from ..inference.generation import Sampling
from ..prompts import TASK_TAGS
from .errors import ApiError
from .media import AUDIO_SUFFIXES, MediaParts, b64, decode_data_url
from .schema import ChatCompletionRequest, FilePart, ImageUrlPart, InputAudioPart, TextPart, VideoUrlPart

# Task tags understood in chat text. [Recognition] is shared by MER and MSA in the prompts; it
# means MER here, and [Sentiment] picks MSA.
CHAT_TAGS = {tag.lower(): task for task, tag in TASK_TAGS.items() if task != "msa"}
CHAT_TAGS.update({"[sentiment]": "msa", **{f"[{t}]": t for t in TASKS}})
_TAG_RE = re.compile(r"\[[A-Za-z_]+\]")


@dataclass
class ChatInputs:
    task: str  # one of TASKS, or "chat" (the language model alone)
    transcript: str
    history: list[dict[str, str]]
    media: MediaParts
    messages: list[dict[str, str]]  # the text conversation (chat mode)
    budget: int | None
    sampling: Sampling
    asr: bool | None


def chat_inputs(req: ChatCompletionRequest) -> ChatInputs:
    """Media from the user's parts, the task from `nanoemox_task` or a tag, the transcript from the
    last user text (without its tag), the dialogue history from the turns before it."""
    media = MediaParts()
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(req.messages):
        texts: list[str] = []
        if isinstance(msg.content, str):
            texts.append(msg.content)
        elif msg.content:
            for j, part in enumerate(msg.content):
                _part(part, f"messages[{i}].content[{j}]", texts, media, msg.role)
        turns.append((msg.role, "\n".join(t for t in texts if t).strip()))

    user_idx = max((k for k, (r, _) in enumerate(turns) if r == "user"), default=None)
    if user_idx is None:
        raise ApiError(400, "no user message", param="messages")
    last_text, task = turns[user_idx][1], req.nanoemox_task
    tag = _TAG_RE.search(last_text)
    if tag and tag.group(0).lower() in CHAT_TAGS:
        task = task if task is not None else CHAT_TAGS[tag.group(0).lower()]
        last_text = (last_text[: tag.start()] + last_text[tag.end():]).strip()
    task = str(task or "mer").lower()
    if task not in TASKS and task != "chat":
        raise ApiError(400, f"unknown nanoemox_task {task!r} (one of {', '.join(TASKS)}, chat)", param="nanoemox_task")
    if task == "chat" and media:
        raise ApiError(400, "nanoemox_task 'chat' takes text only; pick an affective task for media", param="nanoemox_task")
    transcript = last_text if req.nanoemox_transcript is None else req.nanoemox_transcript
    history = [{"speaker": "Speaker" if r == "user" else "Listener", "text": t}
               for k, (r, t) in enumerate(turns) if k < user_idx and r in ("user", "assistant") and t]
    temperature = req.temperature or 0.0
    sampling = Sampling(temperature > 0, temperature or 1.0, 1.0 if req.top_p is None else req.top_p, req.seed)
    return ChatInputs(task, transcript, history, media,
                      [{"role": r, "content": t} for r, t in turns if r in ("system", "user", "assistant")],
                      req.budget, sampling, req.nanoemox_asr)


def _part(part: Any, where: str, texts: list[str], media: MediaParts, role: str) -> None:
    if isinstance(part, TextPart):
        texts.append(part.text)
        return
    if role != "user":
        raise ApiError(400, f"{where}: media parts are only read from user messages", param="messages")
    if isinstance(part, InputAudioPart):
        media.add("audio", b64(part.input_audio.data, "messages"), "." + part.input_audio.format.lower().lstrip("."))
    elif isinstance(part, (ImageUrlPart, VideoUrlPart)):
        spec = part.image_url if isinstance(part, ImageUrlPart) else part.video_url
        data, suffix = decode_data_url(spec if isinstance(spec, str) else spec.url, "messages")
        media.add("image" if isinstance(part, ImageUrlPart) else "video", data, suffix)
    elif isinstance(part, FilePart):
        spec = part.file or part
        raw = spec.file_data
        if not raw:
            raise ApiError(400, f"{where}: only inline file_data is accepted (no file ids, no paths)", param="messages")
        data, suffix = decode_data_url(raw, "messages") if raw.startswith("data:") else (b64(raw, "messages"), "")
        suffix = suffix or Path(spec.filename or "").suffix.lower()[:8]
        media.add("audio" if suffix in AUDIO_SUFFIXES else "video", data, suffix)


def extra_fields(task: str, result) -> dict[str, Any]:
    """The `nanoemox` object riding along a task's completion."""
    d = result.to_dict()
    return {"task": task, "parsed": d["results"][task], "gate": d["gate"], "timings": d["timings"], "transcript": d["transcript"],
            "transcript_source": d["transcript_source"], "modalities": d["modalities"], "warnings": d["warnings"]}


def sse(obj: dict[str, Any]) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


def sse_error(err: ApiError) -> str:
    return sse({"error": {"message": err.message, "type": err.type, "code": err.status}})
