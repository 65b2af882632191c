"""Words: transcripts from intent templates, the emotion lexicon (also the text-only probe), and
the text targets (reason, chain of empathy, empathic reply) built from the rendered clues."""
from __future__ import annotations

import re

import numpy as np

from .latent import EMOTIONS, INTENTS, NEGATIVE, Latent

# Intent templates: each intent has its own cue words so intent is recoverable from the transcript.
# "{ev}" is the first-person event clause; none of these words is in the emotion lexicon.
INTENT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Complain": ("Why me again? {Ev}.", "Honestly, {ev}, and nobody asked.", "This again. {Ev}."),
    "Praise": ("Well done, {ev}.", "You were brilliant, {ev}.", "Nice work, {ev}."),
    "Apologise": ("I'm sorry, {ev}.", "I apologise, {ev}.", "Forgive me, {ev}."),
    "Thank": ("Thank you, {ev}.", "Thanks a lot, {ev}.", "Thanks for asking, {ev}."),
    "Inform": ("Just so you know, {ev}.", "For your information, {ev}.", "FYI, {ev}."),
    "Ask for help": ("Can you help me? {Ev}.", "Please help, {ev}.", "I need your help, {ev}."),
    "Agree": ("Yes, you're right, {ev}.", "I agree, {ev}.", "Exactly, {ev}."),
    "Oppose": ("No, I don't accept it. {Ev}.", "I disagree, {ev}.", "That's not right. {Ev}."),
    "Advise": ("You should plan ahead, {ev}.", "My advice: wait, {ev}.", "You ought to check, {ev}."),
    "Arrange": ("Let's meet tomorrow, {ev}.", "Let's talk at noon, {ev}.", "Let's set a time, {ev}."),
    "Greet": ("Hi there! {Ev}.", "Hello! {Ev}.", "Hey, hi! {Ev}."),
    "Leave": ("I have to go, {ev}.", "I'm leaving, {ev}.", "Goodbye for now, {ev}."),
}
assert set(INTENT_TEMPLATES) == set(INTENTS)

# Short sentences that state an emotion outright; the words in quotes form the lexicon.
EMOTION_SENTENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "angry": (("I'm so angry.", "angry"), ("I'm furious!", "furious"), ("This makes me mad.", "mad")),
    "disgust": (("That's disgusting.", "disgusting"), ("So gross.", "gross"), ("I'm disgusted.", "disgusted")),
    "fear": (("I'm scared.", "scared"), ("I'm really afraid.", "afraid"), ("It's terrifying.", "terrifying")),
    "happy": (("I'm so happy!", "happy"), ("I'm really glad!", "glad"), ("It's wonderful!", "wonderful")),
    "sad": (("I feel so sad.", "sad"), ("I'm heartbroken.", "heartbroken"), ("It's depressing.", "depressing")),
    "surprise": (("Wow, I'm shocked!", "shocked"), ("I'm so surprised!", "surprised"), ("I can't believe it!", "believe")),
    "neutral": (("It's fine, really.", "fine"), ("It's nothing special.", "special"), ("Whatever, it's okay.", "okay")),
}
NEUTRAL_TAILS = ("", "", "", "Anyway.", "That's all.")
LEXICON: dict[str, str] = {w: e for e, sents in EMOTION_SENTENCES.items() for _, w in sents}

GOALS = {
    "angry": "to acknowledge the frustration and help them calm down",
    "disgust": "to validate their reaction and help them move on",
    "fear": "to reassure them and make them feel safe",
    "happy": "to share their joy and encourage them",
    "sad": "to comfort them and offer support",
    "surprise": "to share the surprise and help them take it in",
    "neutral": "to listen attentively and keep the conversation going",
}
APPRAISALS = {
    "angry": "felt unfair to them",
    "disgust": "struck them as distasteful",
    "fear": "might turn out badly for them",
    "happy": "turned out well for them",
    "sad": "meant a loss for them",
    "surprise": "was completely unexpected",
    "neutral": "was routine for them",
}
# Reply pieces; which piece is used follows observable state (intent, event), so replies vary
# across samples (Dist-2) yet stay a learnable function of the clip.
OPENERS = {
    "angry": ("I can hear how angry you are.", "That sounds really infuriating.", "No wonder you're upset.", "I'd be annoyed too.", "That must be so frustrating."),
    "disgust": ("That sounds really unpleasant.", "Ugh, I understand why that bothers you.", "That would put me off too.", "I get why you find that distasteful."),
    "fear": ("That sounds scary.", "It's okay to feel afraid.", "I can tell you're worried.", "That must be frightening.", "I understand why you're nervous."),
    "happy": ("That's great news!", "I'm so happy for you!", "How wonderful!", "That's fantastic!", "You must be thrilled!"),
    "sad": ("I'm so sorry to hear that.", "That sounds really hard.", "I'm here for you.", "That must hurt a lot.", "I'm sorry you're going through this."),
    "surprise": ("Wow, I didn't see that coming either!", "That's quite a surprise!", "No way, really?", "What a twist!"),
    "neutral": ("I see.", "Okay, thanks for telling me.", "Got it.", "Alright, that makes sense.", "Thanks for the update."),
}
CLOSERS = {
    "angry": ("Do you want to talk through what to do next?", "Take a breath, we can sort this out together.", "You have every right to feel that way.", "Let's figure out how to fix it."),
    "disgust": ("Let's put it behind us.", "You don't have to deal with that alone.", "It's fair to keep your distance from it.", "Maybe we can find a better way forward."),
    "fear": ("Whatever happens, I'm with you.", "Let's take it one step at a time.", "You're not alone in this.", "We'll face it together."),
    "happy": ("Let's celebrate soon!", "You really deserve this.", "Tell me everything!", "I'm proud of you."),
    "sad": ("Let me know if you need anything.", "Take all the time you need.", "I'm always here to listen.", "We can talk whenever you want."),
    "surprise": ("How do you feel about it now?", "Tell me more about it!", "What happens next?", "I'm curious to hear the rest."),
    "neutral": ("Let me know how it goes.", "Keep me posted.", "Thanks for filling me in.", "Tell me if anything changes."),
}
HISTORY_OPENERS = ("Hey, what's new?", "How was your day?", "You wanted to tell me something?", "Hi, how are things?", "What's going on?")


def transcript(lat: Latent, rng: np.random.Generator) -> tuple[str, str | None]:
    """The spoken words and the emotion word in them (None when the words carry no emotion word)."""
    template = INTENT_TEMPLATES[lat.intent][int(rng.integers(len(INTENT_TEMPLATES[lat.intent])))]
    body = template.format(ev=lat.event_clause, Ev=lat.event_clause[0].upper() + lat.event_clause[1:])
    word = None
    if lat.text_mode == "congruent":
        sent, word = _pick(EMOTION_SENTENCES[lat.emotion], rng)
        tail = sent
    elif lat.text_mode == "misleading":
        # Sarcasm for negative emotions (positive words, negative face and voice); the reverse otherwise.
        if lat.emotion in NEGATIVE:
            other = "happy"
        elif lat.emotion == "neutral":
            other = ("angry", "happy", "sad")[int(rng.integers(3))]
        else:
            other = ("sad", "angry")[int(rng.integers(2))]
        sent, word = _pick(EMOTION_SENTENCES[other], rng)
        tail = ("Great. " if other == "happy" and lat.emotion in NEGATIVE else "") + sent
    else:
        tail = NEUTRAL_TAILS[int(rng.integers(len(NEUTRAL_TAILS)))]
    return (body + (" " + tail if tail else "")).strip(), word


def _pick(options, rng):
    return options[int(rng.integers(len(options)))]


def history(rng: np.random.Generator) -> list[dict[str, str]]:
    return [{"speaker": "Listener", "text": HISTORY_OPENERS[int(rng.integers(len(HISTORY_OPENERS)))]}]


def text_clues(lat: Latent, word: str | None) -> list[str]:
    clues = [f"words about {lat.topic}"]
    if word is not None and lat.text_mode == "congruent":
        clues.append(f"the word '{word}'")
    elif word is not None:
        clues.append(f"the word '{word}' contradicting the face and voice")
    return clues


def reason(lat: Latent, clues: dict[str, list[str]]) -> str:
    """A rationale naming exactly the rendered clues per modality, then the emotion."""
    parts = []
    if clues.get("face"):
        parts.append("The face shows " + _join(clues["face"]))
    if clues.get("voice"):
        parts.append("the voice has " + _join(clues["voice"]))
    if clues.get("text"):
        parts.append("the speaker uses " + _join(clues["text"]))
    return "; ".join(parts) + f". So the emotion is {lat.emotion}."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def chain_of_empathy(lat: Latent) -> dict[str, str]:
    topic_cap = lat.topic[0].upper() + lat.topic[1:]
    return {
        "event": f"the speaker is talking about {lat.topic}",
        "emotion": lat.emotion,
        "cause": f"{topic_cap} {APPRAISALS[lat.emotion]}",
        "goal": GOALS[lat.emotion],
    }


def response(lat: Latent) -> str:
    opener = OPENERS[lat.emotion][INTENTS.index(lat.intent) % len(OPENERS[lat.emotion])]
    closer = CLOSERS[lat.emotion][lat.event % len(CLOSERS[lat.emotion])]
    middle = {
        "angry": f"The way {lat.topic} was handled is not okay.",
        "disgust": f"The whole business with {lat.topic} sounds awful.",
        "fear": f"It's normal to feel uneasy about {lat.topic}.",
        "happy": f"Good things came from {lat.topic}.",
        "sad": f"It's hard when {lat.topic} goes that way.",
        "surprise": f"Nobody expected {lat.topic} to go like that.",
        "neutral": f"Thanks for telling me about {lat.topic}.",
    }[lat.emotion]
    return f"{opener} {middle} {closer}"


_TOKEN = re.compile(r"[a-z']+")


def lexicon_predict(text: str) -> str:
    """The text-only probe: count lexicon hits per emotion; no hit means neutral."""
    counts = dict.fromkeys(EMOTIONS, 0)
    for tok in _TOKEN.findall(text.lower()):
        tok = tok.strip("'")
        if tok in LEXICON:
            counts[LEXICON[tok]] += 1
    best = max(counts.values())
    if best == 0:
        return "neutral"
    return next(e for e in EMOTIONS if counts[e] == best)
