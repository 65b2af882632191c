"""The label vocabularies, in one place: every closed label set a task offers in its prompt, what
parsing accepts back, and what the dataset converters and the SynthAffect generator write.

Dataset-native codes and orders (CREMA-D's `ANG`, DFEW's 1..7) stay with their converters: they
are file-format facts that map *onto* these vocabularies.
"""
from __future__ import annotations

# MER: the seven basic emotions (MER2023-style closed set; SynthAffect draws from these too).
BASIC_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# MSA: the sign of the [-3, 3] sentiment score.
SENTIMENTS = ("positive", "negative", "neutral")
# MIR: MIntRec's 20 intents, the default candidate set when a sample brings none.
MINTREC_INTENTS = (
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt", "Joke",
    "Oppose", "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent",
    "Greet", "Ask for help",
)
# MIntRec2.0's 30 in-scope intents.
MINTREC2_INTENTS = (
    "Acknowledge", "Advise", "Agree", "Apologise", "Arrange", "Ask for help", "Asking for opinions", "Care",
    "Comfort", "Complain", "Confirm", "Criticize", "Doubt", "Emphasize", "Explain", "Flaunt", "Greet", "Inform",
    "Introduce", "Invite", "Joke", "Leave", "Oppose", "Plan", "Praise", "Prevent", "Refuse", "Taunt", "Thank", "Warn",
)

# The closed set a prompt offers for a task when the sample brings no `candidates` of its own.
DEFAULT_CANDIDATES: dict[str, tuple[str, ...]] = {"mer": BASIC_EMOTIONS, "msa": SENTIMENTS, "mir": MINTREC_INTENTS}
