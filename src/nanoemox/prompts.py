"""The one prompt template for every task, the answer forms, and the guard on user text.

A prompt is a ChatML-style conversation: one user turn that introduces each present modality with
its placeholder run (merged info, audio, face, frames), then the transcript ("subtitle") and any
dialogue history, then a task-tagged instruction; the assistant turn is the answer. A modality that
is absent for a sample (no audio track, no detected face) is simply left out of the user turn, so
its placeholders never appear and no features are spliced for it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .data.schema import TASKS
from .labels import DEFAULT_CANDIDATES, MINTREC_INTENTS, SENTIMENTS  # noqa: F401 (re-exported)

# Placeholder tokens, in prompt order. Their embedding rows are replaced by adapter outputs.
MULTI, AUDIO, FACE, FRAME = "<MultiHere>", "<AudioHere>", "<FaceHere>", "<FrameHere>"
PLACEHOLDERS = {"multi": MULTI, "audio": AUDIO, "face": FACE, "frame": FRAME}
MODALITY_ORDER = ("multi", "audio", "face", "frame")

TASK_TAGS = {
    "msa": "[Recognition]",
    "mer": "[Recognition]",
    "ovmer": "[Recogn_OV]",
    "eri": "[Inference]",
    "mir": "[Intent]",
    "erg": "[Interaction]",
}
_INSTRUCTIONS = {
    "msa": "Judge the overall sentiment of the character. Choose one label from: {candidates}. "
    "Answer as 'The most likely label is X (score S).' with S between -3 and 3.",
    "mer": "Recognise the character's emotion. Choose one label from: {candidates}. "
    "Answer as 'The most likely label is X.'",
    "ovmer": "List every emotion the character may feel, using free emotion words. "
    "Answer as 'The character's emotional state is a, b, c.'",
    "eri": "Explain the character's emotion: cite the clues in the face, the voice and the words, "
    "then name the emotion.",
    "mir": "Recognise the speaker's intent. Choose one label from: {candidates}. "
    "Answer as 'The most likely label is X.'",
    "erg": "You are the listener. Reason step by step inside <think></think> about the event, the "
    "speaker's emotion, its cause and the goal of your response, then reply with empathy.",
}

_MODALITY_TEXT = {
    "multi": "The merged audio-visual information is {ph}.",
    "audio": "The audio is {ph}.",
    "face": "The facial expressions are {ph}.",
    "frame": "The video frames are {ph}.",
}
# The compact style (small preset: every prompt token costs CPU time in each training step) keeps
# the same blocks, order and task tags with fewer words.
_COMPACT_MODALITY = {"multi": "Fused: {ph}", "audio": "Audio: {ph}", "face": "Face: {ph}", "frame": "Frames: {ph}"}
_COMPACT_INSTRUCTIONS = {
    "msa": "Sentiment? Options: {candidates}.",
    "mer": "Emotion? Options: {candidates}.",
    "ovmer": "All emotions?",
    "eri": "Why this emotion? Cite face, voice and words.",
    "mir": "Intent? Options: {candidates}.",
    "erg": "Reply with empathy; think first.",
}
SYSTEM_PROMPT = "You are Nano-EmoX, an expert in human emotions."
PROMPT_STYLES = ("full", "compact")


# --- the guard: user text can never produce placeholder or chat-control tokens -----------------
_SPECIAL_RE = re.compile(
    r"<\s*/?\s*(?:multi|audio|face|frame)\s*here\s*>|<\|[^|<>]{0,40}\|>", flags=re.IGNORECASE
)


def sanitize_user_text(text: str | None) -> str:
    """Neutralise anything in user-supplied text that the tokenizer could read as a special token
    (`<AudioHere>`, `<|im_start|>`, ...): the angle brackets become look-alike guillemets, so the
    words stay readable but can never splice features or open a chat turn."""
    if not text:
        return ""
    return _SPECIAL_RE.sub(lambda m: "‹" + m.group(0)[1:-1].replace("|", "¦") + "›", str(text))


@dataclass(frozen=True)
class PromptSpec:
    """How many placeholder tokens each modality gets (0 = modality absent)."""

    multi: int = 0
    audio: int = 0
    face: int = 0
    frame: int = 0

    def count(self, modality: str) -> int:
        return getattr(self, modality)


def user_turn(
    task: str,
    spec: PromptSpec,
    transcript: str = "",
    history: Sequence[Mapping[str, str]] = (),
    candidates: Sequence[str] | None = None,
    style: str = "full",
) -> str:
    """The user message for `task` (placeholders included, user text sanitised)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r} (expected one of {', '.join(PROMPT_STYLES)})")
    compact = style == "compact"
    parts = []
    if any(spec.count(m) for m in MODALITY_ORDER) and not compact:
        parts.append("We have a clip of a person.")
    for m in MODALITY_ORDER:
        n = spec.count(m)
        if n:
            parts.append((_COMPACT_MODALITY if compact else _MODALITY_TEXT)[m].format(ph=PLACEHOLDERS[m] * n))
    if history:
        lines = [f"{sanitize_user_text(h.get('speaker') or 'Speaker')}: {sanitize_user_text(h.get('text'))}" for h in history]
        parts.append(("Dialogue:\n" if compact else "The dialogue so far:\n") + "\n".join(lines))
    text = sanitize_user_text(transcript).strip()
    if compact:
        parts.append(f'Subtitle: "{text}"' if text else "Subtitle: none")
    else:
        parts.append(f'The subtitle of this clip is: "{text}".' if text else "There is no subtitle for this clip.")
    cands = ", ".join(sanitize_user_text(c) for c in (candidates or default_candidates(task)))
    instruction = (_COMPACT_INSTRUCTIONS if compact else _INSTRUCTIONS)[task]
    parts.append(f"{TASK_TAGS[task]} " + instruction.format(candidates=cands))
    return "\n".join(parts)


def chat_messages(user_content: str) -> list[dict[str, str]]:
    """The conversation sent to the chat template (our own short system turn, so templates that
    add a default system prompt, like SmolLM2's, do not)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_content}]


def default_candidates(task: str) -> Sequence[str]:
    return DEFAULT_CANDIDATES.get(task, ())


# --- answer forms (targets for training, and what parsing expects back) --------------------------
def answer_label(label: str) -> str:
    return f"The most likely label is {label}."


def answer_sentiment(label: str, score: float | None = None) -> str:
    return f"The most likely label is {label}." if score is None else f"The most likely label is {label} (score {score:+.1f})."


def answer_ov(labels: Sequence[str]) -> str:
    return "The character's emotional state is " + ", ".join(labels) + "."


def answer_erg(chain: Mapping[str, str], reply: str) -> str:
    think = (
        f"Firstly, the event scenario is {chain.get('event', '').rstrip('.')}. "
        f"Secondly, the speaker's emotion is {chain.get('emotion', '').rstrip('.')}. "
        f"Thirdly, the cause is {chain.get('cause', '').rstrip('.')}. "
        f"Fourthly, the goal of the response is {chain.get('goal', '').rstrip('.')}."
    )
    return f"<think>{think}</think> {reply.strip()}"


def target_text(task: str, sample) -> str:
    """The assistant answer for `sample` (an AffectSample) on `task`."""
    if task == "mer":
        return answer_label(sample.emotion)
    if task == "msa":
        return answer_sentiment(sample.sentiment, sample.sentiment_score)
    if task == "ovmer":
        return answer_ov(sample.ov_labels)
    if task == "eri":
        return sample.reason.strip()
    if task == "mir":
        return answer_label(sample.intent)
    if task == "erg":
        chain = sample.chain_of_empathy or {"emotion": sample.emotion or ""}
        return answer_erg(chain, sample.response or "")
    raise ValueError(f"unknown task {task!r}")


# Tasks whose answers carry label words (what the align objective can use).
LABEL_WORD_TASKS = ("mer", "msa", "mir", "ovmer")


def answer_words(task: str, sample) -> list[str]:
    """The label words inside `task`'s answer (what the alignment objective pulls adapter outputs
    towards); empty for the free-text tasks (reasons, replies), which have no label words."""
    if task == "mer":
        return [sample.emotion] if sample.emotion else []
    if task == "msa":
        return [sample.sentiment] if sample.sentiment else []
    if task == "mir":
        return [sample.intent] if sample.intent else []
    if task == "ovmer":
        return [w for w in sample.ov_labels if w]
    return []
