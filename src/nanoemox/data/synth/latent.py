"""The latent state of one SynthAffect sample, and the fixed vocabularies it is drawn from.

Everything rendered (face, voice, words) and every target (emotion, sentiment, open-vocabulary
words, reason, intent, empathic reply) is a function of this state, so the targets are learnable
from what is actually in the clip.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..schema import BASIC_EMOTIONS

EMOTIONS: tuple[str, ...] = BASIC_EMOTIONS
NEGATIVE = ("angry", "disgust", "fear", "sad")
POSITIVE = ("happy", "surprise")

# MIntRec intent names; each has its own sentence templates (text.py), so intent is read off the words.
INTENTS: tuple[str, ...] = (
    "Complain", "Praise", "Apologise", "Thank", "Inform", "Ask for help",
    "Agree", "Oppose", "Advise", "Arrange", "Greet", "Leave",
)

INTENSITIES = ("mild", "strong")
CAUSE_KINDS = ("social", "work", "everyday")

# Cause events: valence-neutral facts (any emotion can follow them), so the words about the event
# alone never give the emotion away. (first-person clause for the transcript, topic noun phrase, kind)
EVENTS: tuple[tuple[str, str, str], ...] = (
    ("my sister called about the house", "the call about the house", "social"),
    ("my old friend sent me a letter", "the letter from an old friend", "social"),
    ("my brother showed up at the door", "the brother's visit", "social"),
    ("my neighbour knocked this morning", "the neighbour's visit", "social"),
    ("my parents are coming next week", "the parents' visit", "social"),
    ("my cousin told me the news", "the cousin's news", "social"),
    ("my partner changed our plans", "the change of plans", "social"),
    ("my friend moved to another city", "the friend's move", "social"),
    ("the exam results came out", "the exam results", "work"),
    ("my manager changed the schedule", "the schedule change", "work"),
    ("the team meeting was moved", "the moved meeting", "work"),
    ("the interview results arrived", "the interview results", "work"),
    ("my boss called me into the office", "the meeting with the boss", "work"),
    ("they gave me the new project", "the new project", "work"),
    ("the grades were posted", "the posted grades", "work"),
    ("the company announced the merger", "the merger announcement", "work"),
    ("the package arrived today", "the package", "everyday"),
    ("the car came back from the garage", "the car repair", "everyday"),
    ("the landlord sent an email", "the landlord's email", "everyday"),
    ("the doctor phoned with the results", "the doctor's call", "everyday"),
    ("the flight was rescheduled", "the rescheduled flight", "everyday"),
    ("the power went off last night", "the power cut", "everyday"),
    ("the bank sent me a letter", "the letter from the bank", "everyday"),
    ("the old house was sold", "the sale of the old house", "everyday"),
)

# Open-vocabulary words: a deterministic function of (emotion, rendered intensity, cause kind,
# sarcasm), drawn from words that the MER-UniBench emotion wheels know.
OV_BASE = {
    "angry": "angry", "disgust": "disgusted", "fear": "fearful", "happy": "happy",
    "sad": "sad", "surprise": "surprised", "neutral": "calm",
}
OV_INTENSITY = {
    "angry": ("annoyed", "furious"), "disgust": ("uncomfortable", "revolted"),
    "fear": ("worried", "terrified"), "happy": ("content", "excited"),
    "sad": ("disappointed", "heartbroken"), "surprise": ("startled", "astonished"),
    "neutral": ("relaxed", "relaxed"),
}
OV_KIND = {
    "angry": {"social": "betrayed", "work": "frustrated", "everyday": "irritated"},
    "disgust": {"social": "disapproving", "work": "appalled", "everyday": "grossed out"},
    "fear": {"social": "insecure", "work": "anxious", "everyday": "nervous"},
    "happy": {"social": "grateful", "work": "proud", "everyday": "joyful"},
    "sad": {"social": "lonely", "work": "discouraged", "everyday": "miserable"},
    "surprise": {"social": "amazed", "work": "shocked", "everyday": "stunned"},
    "neutral": {"social": "attentive", "work": "focused", "everyday": "peaceful"},
}

# Sentiment magnitude per emotion at strong intensity (sign fixed per emotion; surprise counts as positive).
SENTIMENT_BASE = {
    "angry": -2.6, "disgust": -2.2, "fear": -1.9, "sad": -2.4,
    "happy": 2.5, "surprise": 1.4, "neutral": 0.0,
}

# Which modalities carry the emotion (besides text): mostly face and voice together.
CUE_WEIGHTS = {("face", "voice"): 0.80, ("face",): 0.11, ("voice",): 0.09}
VOICE_ONLY_EMOTIONS = ("angry", "sad", "happy", "surprise", "fear")  # the prosodically distinctive ones
# How the words relate to the emotion.
TEXT_MODE_WEIGHTS = {"congruent": 0.40, "neutral": 0.45, "misleading": 0.15}


@dataclass
class Latent:
    index: int
    emotion: str
    intensity: str
    intent: str
    event: int  # index into EVENTS
    cue_modalities: list[str]  # modalities that express the emotion: subset of face, voice, text
    text_mode: str
    sentiment_score: float

    @property
    def event_clause(self) -> str:
        return EVENTS[self.event][0]

    @property
    def topic(self) -> str:
        return EVENTS[self.event][1]

    @property
    def cause_kind(self) -> str:
        return EVENTS[self.event][2]

    @property
    def face_expressive(self) -> bool:
        return "face" in self.cue_modalities and self.emotion != "neutral"

    @property
    def voice_expressive(self) -> bool:
        return "voice" in self.cue_modalities and self.emotion != "neutral"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(topic=self.topic, cause_kind=self.cause_kind)
        return d


def balanced_labels(labels: tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    """n labels with counts as equal as possible, in a seeded random order."""
    out = [labels[i % len(labels)] for i in range(n)]
    order = rng.permutation(n)
    return [out[i] for i in order]


def sample_latent(index: int, emotion: str, intent: str, rng: np.random.Generator) -> Latent:
    intensity = INTENSITIES[int(rng.random() < 0.5)]
    event = int(rng.integers(len(EVENTS)))
    if emotion == "neutral":
        cues: tuple[str, ...] = ("face", "voice")
    else:
        options = [c for c in CUE_WEIGHTS if c != ("voice",) or emotion in VOICE_ONLY_EMOTIONS]
        w = np.array([CUE_WEIGHTS[c] for c in options])
        cues = options[int(rng.choice(len(options), p=w / w.sum()))]
    modes = list(TEXT_MODE_WEIGHTS)
    w = np.array([TEXT_MODE_WEIGHTS[m] for m in modes])
    if len(cues) == 1:  # a single-modality sample must not also be told by the words
        w[modes.index("congruent")] = 0.0
    text_mode = modes[int(rng.choice(len(modes), p=w / w.sum()))]
    cue_list = list(cues) + (["text"] if text_mode == "congruent" else [])
    if cues == ("voice",):
        # a voice-only sample speaks with the full profile (its only cue must stay recognisable),
        # so the intensity it renders -- and the labels that follow it -- is "strong"
        intensity = "strong"
    # the score is a function of what is rendered (emotion and intensity), with no hidden noise
    score = sentiment_score(emotion, intensity)
    return Latent(
        index=index, emotion=emotion, intensity=intensity, intent=intent, event=event,
        cue_modalities=cue_list, text_mode=text_mode, sentiment_score=round(score, 1),
    )


def sentiment_score(emotion: str, intensity: str) -> float:
    """Sentiment in [-3, 3]: the emotion's signed magnitude, scaled down at mild intensity."""
    return round(SENTIMENT_BASE[emotion] * (1.0 if intensity == "strong" else 0.6), 1)


def ov_labels(lat: Latent, sarcastic: bool) -> list[str]:
    """The basic word, the intensity word (rendered in face and voice) and the cause-kind word
    (read off the event named in the words), plus "sarcastic" when the words contradict a
    negative face and voice."""
    e = lat.emotion
    words = [OV_BASE[e], OV_INTENSITY[e][INTENSITIES.index(lat.intensity)], OV_KIND[e][lat.cause_kind]]
    if sarcastic:
        words.append("sarcastic")
    return list(dict.fromkeys(words))  # dedupe, keep order
