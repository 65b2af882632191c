"""Turning free text into emotion-word lists (the step before the wheel metric), and the ERI judge.

Two interchangeable extractors, both `extractor(texts) -> list[list[str]]`:
- `LexiconExtractor` (default, deterministic): finds vocabulary words in the text, preferring the
  concluding clause ("... his emotional state is anger and frustration") when there is one.
  Vocabulary: every word form of the MER-UniBench wheel files when present, else the built-in
  taxonomy.
- `LLMExtractor`: asks any OpenAI-compatible chat endpoint (e.g. `nanoemox serve`) at
  temperature 0, as MER-UniBench does with an LLM (which it ran at 0.7; we decode greedily).

`LLMJudge` scores ERI rationales 1-10 for clue overlap and emotion overlap through the same
endpoint. A failed call raises `JudgeError`, or with `on_error="missing"` is recorded as None and
counted -- never a silent zero.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from ..errors import NanoEmoXError
from .wheel import WheelSet, load_wheels, parse_label_list


class Extractor(Protocol):
    name: str

    def __call__(self, texts: Sequence[str]) -> list[list[str]]: ...


class JudgeError(NanoEmoXError):
    """The LLM endpoint failed or answered something unusable."""


_NEGATORS = {"not", "no", "never", "without", "nor", "hardly", "n't", "lack", "lacks", "lacking", "free"}
_CONCLUSION_RE = re.compile(
    r"(?:emotional state|emotions?|feelings?|mood)\s+(?:is|are|was|were|of|as|could be|may be|might be|can be)\b"
    r"|\b(?:therefore|thus|in summary|overall|in conclusion)\b",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
# Frequent rationale words that are in the MER-UniBench form list but name no emotion of the
# character when used in a rationale ("pay attention", "a sense of", "care about the audio").
_STOP = frozenset("""
attention sense interest interested regard concern concerns like look touch expression expressions expressive
tone mood moved feeling feelings emotion emotions emotional emotionally state well open high low positive negative
might facial face person personal speech speaking spoken quickly considering go going evaluation strong certain
question questioning pressure slight lack including support supports use used using current seen see information
here related leave revealing sharp thank bit directed thinking thought facing clear reflects shaking responding
important busy challenge threat determine alleviate sentiment content gentle weak
""".split())


@dataclass
class LexiconExtractor:
    """Deterministic word-list extraction by longest vocabulary match (up to 4 words), skipping
    words negated within the two preceding tokens. `scope="auto"` reads only the concluding
    sentences when they name any vocabulary word, else the whole text; "all" reads everything."""

    ws: WheelSet | None = None
    scope: str = "auto"
    stopwords: frozenset[str] = _STOP
    name: str = "lexicon"
    _vocab: dict[int, set[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        ws = self.ws or load_wheels()
        self.ws = ws
        self.name = "lexicon(" + ("mer-unibench" if ws.is_mer_unibench else "builtin") + ")"
        usable = ws.masks["level1"].any(axis=1)  # keep only forms that map onto some wheel
        for word, row in ws.vocab.items():
            if usable[row] and word not in self.stopwords:
                self._vocab.setdefault(len(word.split()), set()).add(word)

    def extract(self, text: str | None) -> list[str]:
        if not text or not str(text).strip():
            return []
        text = str(text)
        if self.scope == "auto":
            tail = _conclusion(text)
            if tail:
                found = self._scan(tail)
                if found:
                    return found
        return self._scan(text)

    def _scan(self, text: str) -> list[str]:
        toks = _WORD_RE.findall(text.lower().replace("’", "'"))
        out: list[str] = []
        i = 0
        maxn = max(self._vocab, default=1)
        while i < len(toks):
            for n in range(min(maxn, len(toks) - i), 0, -1):
                cand = " ".join(toks[i:i + n])
                if cand in self._vocab.get(n, ()):
                    prev = toks[max(0, i - 2):i]
                    if not any(p in _NEGATORS or p.endswith("n't") for p in prev) and cand not in out:
                        out.append(cand)
                    i += n
                    break
            else:
                i += 1
        return out

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.extract(t) for t in texts]


def _conclusion(text: str) -> str:
    """The sentences from the last one that states a conclusion about emotions onwards."""
    sents = re.split(r"(?<=[.!?])\s+", text.strip())
    for k in range(len(sents) - 1, -1, -1):
        if _CONCLUSION_RE.search(sents[k]):
            return " ".join(sents[k:])
    return ""


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint
# ---------------------------------------------------------------------------------------------
EXTRACT_PROMPT = (
    "You are an expert in emotion analysis. Read the description below and list the emotional states of "
    "the main character that it states or clearly implies. Answer with English emotion words only, "
    "separated by commas, in one line, with nothing else. If there are none, answer 'none'.\n\n"
    "Description: {text}"
)
JUDGE_PROMPT = (
    "You compare a predicted explanation of a person's emotion with a reference explanation.\n"
    "Give two integer scores from 1 to 10: CLUE: how well the predicted explanation cites the same visual, "
    "acoustic and textual clues as the reference; EMOTION: how well the emotions it concludes match the "
    "reference emotions. Answer exactly in the form 'CLUE: <n>; EMOTION: <n>'.\n\n"
    "Reference: {reference}\n\nPrediction: {prediction}"
)


@dataclass
class ChatClient:
    """Minimal client for `POST {base_url}/chat/completions` (OpenAI wire format)."""

    base_url: str
    model: str = "default"
    api_key: str | None = None
    timeout: float = 60.0
    max_tokens: int = 128

    def complete(self, prompt: str) -> str:
        import httpx

        url = self.base_url.rstrip("/")
        if not url.endswith("/chat/completions"):
            url += "/chat/completions"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": 0, "max_tokens": self.max_tokens}
        try:
            r = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise JudgeError(f"{url}: request failed ({type(e).__name__}: {e})") from None
        if r.status_code != 200:
            raise JudgeError(f"{url}: HTTP {r.status_code}: {r.text[:200]}")
        try:
            content = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"{url}: response is not an OpenAI chat completion: {r.text[:200]}") from None
        if not isinstance(content, str):
            raise JudgeError(f"{url}: empty completion")
        return content


@dataclass
class LLMExtractor:
    """Label extraction by an LLM at temperature 0; the answer is parsed as a comma list.
    Endpoint errors raise `JudgeError` (an extraction that silently returned [] would score 0)."""

    client: ChatClient
    prompt: str = EXTRACT_PROMPT
    name: str = "llm"

    def extract(self, text: str | None) -> list[str]:
        if not text or not str(text).strip():
            return []
        answer = self.client.complete(self.prompt.format(text=str(text)))
        line = answer.strip().splitlines()[0] if answer.strip() else ""
        line = re.sub(r"^(?:answer|emotions?)\s*:\s*", "", line, flags=re.IGNORECASE).rstrip(".")
        words = [w for w in parse_label_list(line.replace(";", ",")) if w and w != "none"]
        return list(dict.fromkeys(words))

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.extract(t) for t in texts]


_SCORE_RE = re.compile(r"clue\w*\s*[:=]\s*(\d+(?:\.\d+)?).*?emotion\w*\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE | re.DOTALL)


@dataclass
class LLMJudge:
    """ERI judge: per (prediction, reference) pair, clue and emotion overlap scores in 1..10.

    on_error="raise" (default) stops at the first failed or unparsable answer; "missing" records
    None for that sample and reports how many are missing; the means are over judged samples."""

    client: ChatClient
    on_error: str = "raise"
    prompt: str = JUDGE_PROMPT

    def score(self, prediction: str, reference: str) -> tuple[float, float]:
        answer = self.client.complete(self.prompt.format(prediction=prediction or "", reference=reference or ""))
        m = _SCORE_RE.search(answer)
        if not m:
            raise JudgeError(f"judge answer has no 'CLUE: n; EMOTION: n' scores: {answer[:120]!r}")
        clue, emo = float(m.group(1)), float(m.group(2))
        if not (1 <= clue <= 10 and 1 <= emo <= 10):
            raise JudgeError(f"judge scores out of range 1-10: {answer[:120]!r}")
        return clue, emo

    def __call__(self, predictions: Sequence[str], references: Sequence[str]) -> dict:
        per: list[tuple[float, float] | None] = []
        errors: list[str] = []
        for p, r in zip(predictions, references):
            try:
                per.append(self.score(p, r))
            except JudgeError as e:
                if self.on_error == "raise":
                    raise
                per.append(None)
                errors.append(str(e))
        judged = [x for x in per if x is not None]
        return {
            "clue_score": sum(x[0] for x in judged) / len(judged) if judged else None,
            "emotion_score": sum(x[1] for x in judged) / len(judged) if judged else None,
            "n_judged": len(judged),
            "n_missing": len(per) - len(judged),
            "per_sample": [list(x) if x else None for x in per],
            "errors": errors[:5],
        }


def make_extractor(kind: str = "lexicon", *, ws: WheelSet | None = None, base_url: str | None = None,
                   model: str = "default", api_key: str | None = None) -> Extractor:
    """`lexicon` (default) or `llm` (needs base_url)."""
    if kind == "lexicon":
        return LexiconExtractor(ws)
    if kind == "llm":
        if not base_url:
            raise NanoEmoXError("the llm extractor needs --llm-url (an OpenAI-compatible endpoint)")
        return LLMExtractor(ChatClient(base_url, model=model, api_key=api_key))
    raise NanoEmoXError(f"unknown extractor {kind!r} (expected lexicon or llm)")
