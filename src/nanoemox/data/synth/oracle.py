"""Targets recomputed from what a clip renders, never from the hidden latent state.

`rendered_evidence(record)` reads only what is perceivable in a SynthAffect clip: the expression the
face draws and at which strength (`meta.rendered.face`), the voice profile it speaks with
(`meta.rendered.voice`) and the words it says (`transcript`). `oracle_targets` turns that evidence
into the six tasks' targets; on a generated corpus they equal the gold labels on every sample, which
is what "a perfect perceiver scores 1.0" means. `text_only_targets` is the same oracle restricted
to the words (the text-only probe of the corpus card).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from .face import face_clues
from .latent import EVENTS, INTENTS, NEGATIVE, Latent, ov_labels, sentiment_score
from .text import EMOTION_SENTENCES, INTENT_TEMPLATES, chain_of_empathy, lexicon_predict, reason, response, text_clues
from .voice import voice_clues


@dataclass(frozen=True)
class Evidence:
    emotion: str  # the expression shown by the face, else by the voice, else neutral
    intensity: str  # the strength it is rendered at
    face_shows: bool
    voice_shows: bool
    intent: str | None  # the intent template the words follow
    event: int | None  # the event clause the words name
    word: str | None  # the emotion word said, if any
    word_emotion: str | None


@lru_cache(maxsize=1)
def _template_patterns() -> list[tuple[re.Pattern, str, int]]:
    """(regex, intent, event) for every template x event: the transcript's body is one of them."""
    out = []
    for intent, templates in INTENT_TEMPLATES.items():
        for t in templates:
            for k, (clause, _, _) in enumerate(EVENTS):
                body = t.format(ev=clause, Ev=clause[0].upper() + clause[1:])
                out.append((re.compile("^" + re.escape(body) + r"(?: |$)"), intent, k))
    return out


def read_words(transcript: str) -> tuple[str | None, int | None, str | None, str | None]:
    """(intent, event, emotion word, that word's emotion) as the words state them."""
    intent = event = None
    rest = transcript
    for pat, i, k in _template_patterns():
        m = pat.match(transcript)
        if m:
            intent, event, rest = i, k, transcript[m.end():]
            break
    for emo, sents in EMOTION_SENTENCES.items():
        for sent, word in sents:
            if sent in rest:
                return intent, event, word, emo
    return intent, event, None, None


def rendered_evidence(record: Mapping[str, Any]) -> Evidence:
    r = record["meta"]["rendered"]
    face, voice = r["face"], r["voice"]
    face_shows = face["expression"] != "neutral"
    voice_shows = voice["profile"] != "neutral"
    if face_shows:
        emotion, intensity = face["expression"], face["intensity"]
    elif voice_shows:
        emotion, intensity = voice["profile"], voice["intensity"]
    else:
        emotion, intensity = "neutral", face["intensity"]
    intent, event, word, word_emotion = read_words(record["transcript"])
    return Evidence(emotion, intensity, face_shows, voice_shows, intent, event, word, word_emotion)


def _latent(ev: Evidence, index: int, congruent: bool) -> Latent:
    cues = [m for m, on in (("face", ev.face_shows), ("voice", ev.voice_shows)) if on] or ["face", "voice"]
    mode = "congruent" if congruent else ("misleading" if ev.word else "neutral")
    return Latent(index=index, emotion=ev.emotion, intensity=ev.intensity, intent=ev.intent or INTENTS[0],
                  event=ev.event if ev.event is not None else 0, cue_modalities=cues + (["text"] if congruent else []),
                  text_mode=mode, sentiment_score=sentiment_score(ev.emotion, ev.intensity))


def oracle_targets(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every task's target from the rendered evidence alone."""
    ev = rendered_evidence(record)
    congruent = ev.word is not None and ev.word_emotion == ev.emotion
    lat = _latent(ev, 0, congruent)
    sarcastic = ev.word is not None and not congruent and ev.emotion in NEGATIVE
    clues = {
        "face": face_clues(ev.emotion, ev.intensity, ev.face_shows),
        "voice": voice_clues(ev.emotion, ev.voice_shows),
        "text": text_clues(lat, ev.word),
    }
    return {
        "emotion": ev.emotion,
        "sentiment_score": lat.sentiment_score,
        "ov_labels": ov_labels(lat, sarcastic),
        "intent": ev.intent,
        "reason": reason(lat, clues),
        "response": response(lat),
        "chain_of_empathy": chain_of_empathy(lat),
    }


def text_only_targets(record: Mapping[str, Any]) -> dict[str, Any]:
    """The oracle given only the words: the emotion from the lexicon, intensity unknown ("strong")."""
    intent, event, word, _ = read_words(record["transcript"])
    emotion = lexicon_predict(record["transcript"])
    ev = Evidence(emotion, "strong", emotion != "neutral", False, intent, event, word, emotion if word else None)
    lat = _latent(ev, 0, word is not None)
    return {"emotion": emotion, "sentiment_score": lat.sentiment_score, "intent": intent, "ov_labels": ov_labels(lat, False)}
