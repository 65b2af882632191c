"""The server's typed surface: its settings, the OpenAI chat request (as pydantic models, so /docs
documents it and a wrong key or type is a one-line 400), and the documented responses.

Unknown keys are refused at every level (`extra="forbid"`), except the optional keys of OpenAI's
chat schema, which are accepted and ignored (a client library may send them)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_TOKENS_CAP = 1024


class ServerSettings(BaseModel):
    """`nanoemox serve` settings (validated on assignment too: tests and operators may tune them live)."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    api_key: str | None = None
    max_upload_mb: float = Field(25.0, gt=0)
    max_clip_seconds: float = Field(60.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    queue_size: int = Field(8, ge=0, description="requests that may wait beyond one running batch; more get 503")
    max_batch: int = Field(8, ge=1, description="requests decoded together at most")
    batch_wait_ms: float = Field(5.0, ge=0, description="how long an idle worker waits for companions of a first request")
    gather_ms: float = Field(1000.0, ge=0, description="how long it waits longer for admitted requests still decoding their media")
    asr: bool = False  # transcribe speech when a request gives no transcript and does not say

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ message parts
class TextPart(Strict):
    type: Literal["text", "input_text"]
    text: str = ""


class AudioSpec(Strict):
    data: str = Field(description="base64 audio bytes")
    format: str = Field("wav", pattern=r"^\.?[A-Za-z0-9]{1,8}$")


class InputAudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: AudioSpec


class UrlSpec(Strict):
    url: str = Field(description="a data: URL (no other scheme is fetched)")
    detail: str | None = None


class ImageUrlPart(Strict):
    type: Literal["image_url"]
    image_url: UrlSpec | str


class VideoUrlPart(Strict):
    type: Literal["video_url"]
    video_url: UrlSpec | str


class FileSpec(Strict):
    file_data: str | None = Field(None, description="a data: URL or base64 bytes")
    filename: str | None = None
    file_id: str | None = None


class FilePart(Strict):
    type: Literal["file", "input_file"]
    file: FileSpec | None = None
    file_data: str | None = None  # the Responses-API shape: fields beside `type`
    filename: str | None = None
    file_id: str | None = None


ContentPart = Annotated[Union[TextPart, InputAudioPart, ImageUrlPart, VideoUrlPart, FilePart], Field(discriminator="type")]


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: Any = None
    tool_call_id: str | None = None
    function_call: Any = None
    refusal: str | None = None
    audio: Any = None


class ChatCompletionRequest(Strict):
    """OpenAI's chat request plus three `nanoemox_*` keys. The task: `nanoemox_task`, else a tag in
    the last user text ([Recognition] mer, [Sentiment] msa, [Recogn_OV] ovmer, [Inference] eri,
    [Intent] mir, [Interaction] erg, or [task]), else mer; `chat` runs the language model alone."""

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="0 or absent: greedy")
    top_p: float | None = Field(None, ge=0, le=1)
    seed: StrictInt | None = None
    n: StrictInt | None = Field(None, ge=1, le=1, description="only 1")
    nanoemox_task: str | None = Field(None, description="mer | msa | ovmer | eri | mir | erg | chat")
    nanoemox_transcript: str | None = Field(None, description="the clip's transcript (default: the last user text)")
    nanoemox_asr: bool | None = Field(None, description="transcribe the speech when no transcript is given")
    # OpenAI's optional keys: accepted, not used by this model
    stop: Any = None
    stream_options: Any = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: Any = None
    function_call: Any = None
    user: str | None = None
    metadata: Any = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: Any = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @property
    def budget(self) -> int | None:
        n = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return None if n is None else min(n, MAX_TOKENS_CAP)


# ------------------------------------------------------------------ /v1/analyze form fields
ANALYZE_FIELDS = {
    "file": "video / audio / image to analyse (optional: text only without it)",
    "tasks": "'mer,erg' or 'all' (default mer)",
    "transcript": "what is said in the clip",
    "history": 'earlier turns as JSON: [{"speaker": "...", "text": "..."}]',
    "asr": "true: transcribe the speech when no transcript is given",
    "max_new_tokens": f"answer budget in tokens, 1..{MAX_TOKENS_CAP} (default per task)",
    "temperature": "0 = greedy (default)",
    "top_p": "nucleus mass with temperature > 0",
    "seed": "sampling seed",
}


# ------------------------------------------------------------------ documented responses
class ParsedResult(BaseModel):
    task: str
    raw: str
    parse_error: str | None = None
    model_config = ConfigDict(extra="allow")


class AnalysisResponse(BaseModel):
    id: str
    object: Literal["nanoemox.analysis"]
    model: str
    media: dict[str, Any] | None
    modalities: list[str]
    transcript: str
    transcript_source: Literal["given", "asr", "none"]
    results: dict[str, ParsedResult]
    gate: list[float] | None
    timings: dict[str, float]
    warnings: list[str]


class ChatChoice(BaseModel):
    index: int
    message: dict[str, Any]
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    nanoemox: dict[str, Any] | None = Field(None, description="parsed fields, gate, timings (absent in chat mode)")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


STRICT_MODELS = (ChatCompletionRequest, ChatMessage, TextPart, InputAudioPart, ImageUrlPart, VideoUrlPart, FilePart,
                 AudioSpec, UrlSpec, FileSpec)


def known_fields_for(node: Any) -> list[str]:
    """The fields of the model that an object with an unknown key was meant to be: the one whose
    `type` tag matches, else the one sharing most keys with it."""
    keys = set(node) if isinstance(node, dict) else set()

    def score(model: type[BaseModel]) -> tuple[int, int]:
        tag = model.model_fields.get("type")
        tag_ok = int(bool(tag) and isinstance(node, dict) and node.get("type") in getattr(tag.annotation, "__args__", ()))
        return tag_ok, len(keys & set(model.model_fields))

    return list(max(STRICT_MODELS, key=score).model_fields)
