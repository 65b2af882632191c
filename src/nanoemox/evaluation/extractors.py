"""The two LLM steps of MER-UniBench (spec PAPER_EVAL.md section 1) behind one interface:

    extractor.emotions(answers)      -> one emotion list per answer (None = extraction failed)
    extractor.sentiments(lists)      -> "positive" / "negative" / "neutral" / other text (None = failed)

Back ends: `openai` (any OpenAI-compatible endpoint, e.g. `vllm serve Qwen/Qwen2.5-7B-Instruct`
as the authors used, or `nanoemox serve`), `hf` (a local Hugging Face causal-LM folder, batched
greedy decoding) and `lexicon` (the deterministic offline proxy; NOT the paper's protocol, and
every table made with it says so). LLM back ends decode at temperature 0 (the authors sampled at
0.7). A failed item is None and is reported as missing by the scorer, never scored as 0.

Results are cached on disk (`ExtractionCache`), keyed by extractor identity, prompt version, step
and text, so a rerun or a second checkpoint pays only for answers not seen before.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import NanoEmoXError
from .wheel import WheelSet, builtin_wheelset, load_wheels, parse_label_list

PROMPT_VERSION = "unibench-1"
EXTRACTORS = ("openai", "hf", "lexicon")
LEXICON_NOTE = ("labels extracted by the offline lexicon proxy, not by an LLM as in the paper: "
                "these numbers are not comparable to the paper's")

# The two instructions of the protocol, in our words: expert framing, the two few-shot pairs, the text.
EMOTION_PROMPT = (
    "Please act as an expert in the field of emotions. We give clues that may relate to a character's "
    "emotions. From these clues, identify the emotional states of the main character (the one the clues "
    "describe in most detail). Output only the clearly identifiable emotion categories, separated by "
    "commas, in a list; if none can be identified, output an empty list.\n"
    "Input: We cannot recognize his emotional state; Output: []\n"
    "Input: His emotional state is happy, sad, and angry; Output: [happy, sad, angry]\n"
    "Input: {text}; Output: "
)
SENTIMENT_PROMPT = (
    "Please act as an expert in the field of emotions. We give a few words that describe a character's "
    "emotions. Choose the most likely sentiment among the candidates [positive, negative, neutral]. "
    "Output only the answer, without analysis.\n"
    "Input: [joyful]; Output: positive\n"
    "Input: []; Output: neutral\n"
    "Input: {text}; Output: "
)


class ExtractorError(NanoEmoXError):
    """The extractor cannot work at all (endpoint down, model folder missing)."""


def _answer_part(text: str) -> str:
    """Strip echoes of the few-shot format: keep what follows the last 'Output:' and cut at the
    next 'Input:'."""
    s = text or ""
    k = s.rfind("Output:")
    if k != -1:
        s = s[k + len("Output:"):]
    k = s.find("Input:")
    if k != -1:
        s = s[:k]
    return s.strip()


def postprocess_emotions(text: str) -> list[str]:
    s = _answer_part(text)
    m = re.search(r"\[([^\]]*)\]", s)
    if m:
        s = m.group(1)
    else:
        s = s.splitlines()[0] if s else ""
    return list(dict.fromkeys(w for w in parse_label_list(s.strip().rstrip(".")) if w))


def postprocess_sentiment(text: str) -> str:
    s = _answer_part(text)
    s = s.splitlines()[0] if s else ""
    return s.strip().lower().strip(" .'\"[]*`")


def _format_list(labels: Sequence[str]) -> str:
    return "[" + ", ".join(labels) + "]"


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------
class ExtractionCache:
    """One append-only JSONL file per extractor identity under `root`; each line {"k": key, "v":
    value}. Appends are single fsynced writes under a file lock, so concurrent runs and crashes
    never leave a half line (a torn last line is ignored on read)."""

    def __init__(self, root: str | os.PathLike, identity: str):
        self.root = Path(root)
        self.identity = identity
        digest = hashlib.sha256(f"{identity}\0{PROMPT_VERSION}".encode()).hexdigest()[:16]
        self.path = self.root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', identity)[:60]}-{digest}.jsonl"
        self._mem: dict[str, object] | None = None

    @staticmethod
    def key(step: str, text: str) -> str:
        return hashlib.sha256(f"{PROMPT_VERSION}\0{step}\0{text}".encode()).hexdigest()

    def _load(self) -> dict[str, object]:
        if self._mem is None:
            self._mem = {}
            if self.path.is_file():
                with open(self.path, encoding="utf-8") as f:
                    for line in f:
                        if not line.endswith("\n"):
                            break
                        try:
                            d = json.loads(line)
                            self._mem[d["k"]] = d["v"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            continue
        return self._mem

    def get(self, key: str):
        return self._load().get(key)

    def put_many(self, items: dict[str, object]) -> None:
        if not items:
            return
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps({"k": k, "v": v}, ensure_ascii=False) + "\n" for k, v in items.items())
        with FileLock(str(self.path) + ".lock"):
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        self._load().update(items)


# ---------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------
@dataclass
class BaseExtractor:
    """Shared cache + batching logic; subclasses implement `_complete(prompts)` (LLMs) or
    override the two steps (lexicon)."""

    cache_dir: str | os.PathLike | None = None
    name: str = "base"
    stats: dict = field(default_factory=lambda: {"cached": 0, "computed": 0, "failed": 0})
    _cache: ExtractionCache | None = field(default=None, init=False, repr=False)

    @property
    def identity(self) -> str:
        return self.name

    @property
    def is_proxy(self) -> bool:
        return False

    def _cached(self) -> ExtractionCache | None:
        if self.cache_dir is not None and self._cache is None:
            self._cache = ExtractionCache(self.cache_dir, self.identity)
        return self._cache

    def _complete(self, prompts: list[str]) -> list[str | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _compute(self, step: str, inputs: list[str]) -> list:
        prompt = EMOTION_PROMPT if step == "emotions" else SENTIMENT_PROMPT
        post = postprocess_emotions if step == "emotions" else postprocess_sentiment
        outs = self._complete([prompt.format(text=t) for t in inputs])
        return [None if o is None else post(o) for o in outs]

    def _run(self, step: str, inputs: Sequence[str]) -> list:
        cache = self._cached()
        keys = [ExtractionCache.key(step, t) for t in inputs]
        results: list = [cache.get(k) if cache else None for k in keys]
        todo = sorted({i for i, r in enumerate(results) if r is None}, key=lambda i: inputs[i])
        uniq: dict[str, list[int]] = {}
        for i in todo:
            uniq.setdefault(inputs[i], []).append(i)
        self.stats["cached"] += len(inputs) - len(todo)
        texts = list(uniq)
        fresh = self._compute(step, texts) if texts else []
        new = {}
        for t, v in zip(texts, fresh):
            for i in uniq[t]:
                results[i] = v
            if v is None:
                self.stats["failed"] += 1
            else:
                self.stats["computed"] += 1
                new[ExtractionCache.key(step, t)] = v
        if cache:
            cache.put_many(new)
        return results

    def emotions(self, answers: Sequence[str]) -> list[list[str] | None]:
        return self._run("emotions", [str(a or "") for a in answers])

    def sentiments(self, label_lists: Sequence[Sequence[str]]) -> list[str | None]:
        return self._run("sentiment", [_format_list(x) for x in label_lists])


# ---------------------------------------------------------------------------------------------
# openai
# ---------------------------------------------------------------------------------------------
@dataclass
class OpenAIExtractor(BaseExtractor):
    base_url: str = ""
    model: str = "default"
    api_key: str | None = None
    concurrency: int = 8
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 120.0
    max_tokens: int = 64
    name: str = "openai"
    errors: list[str] = field(default_factory=list)

    @property
    def identity(self) -> str:
        return f"openai:{self.model}@{self.base_url.rstrip('/')}"

    def _url(self) -> str:
        url = self.base_url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def check(self) -> None:
        """Fail early, in one line, when the endpoint cannot be reached at all."""
        import httpx

        url = self._url()
        last = ""
        for attempt in range(max(1, self.retries)):
            try:
                httpx.get(url.rsplit("/chat/completions", 1)[0] + "/models", timeout=min(self.timeout, 10.0), headers=self._headers())
                return
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                if attempt + 1 < max(1, self.retries):
                    time.sleep(self.backoff * 2 ** attempt)
        raise ExtractorError(f"openai extractor: cannot reach {self.base_url} after {max(1, self.retries)} tries ({last}); "
                             "start the server (e.g. `vllm serve Qwen/Qwen2.5-7B-Instruct`) or pass --llm-url")

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _one(self, client, prompt: str) -> str | None:
        import httpx

        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                "max_tokens": self.max_tokens}
        last = ""
        for attempt in range(max(1, self.retries)):
            try:
                r = client.post(self._url(), json=body, headers=self._headers(), timeout=self.timeout)
                if r.status_code == 200:
                    content = r.json()["choices"][0]["message"]["content"]
                    if isinstance(content, str):
                        return content
                    last = "empty completion"
                else:
                    last = f"HTTP {r.status_code}: {r.text[:120]}"
                    if r.status_code < 500 and r.status_code != 429:
                        break  # a client error will not improve on retry
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt + 1 < max(1, self.retries):
                time.sleep(self.backoff * 2 ** attempt)
        self.errors.append(last)
        return None

    def _complete(self, prompts: list[str]) -> list[str | None]:
        import httpx

        self.check()
        with httpx.Client() as client, ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda p: self._one(client, p), prompts))


# ---------------------------------------------------------------------------------------------
# hf
# ---------------------------------------------------------------------------------------------
@dataclass
class HFExtractor(BaseExtractor):
    model_dir: str = ""
    batch_size: int = 8
    max_new_tokens: int = 32
    device: str | None = None
    name: str = "hf"
    _lm: object = field(default=None, init=False, repr=False)
    _tok: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        cfg = Path(self.model_dir) / "config.json"
        if not cfg.is_file():
            raise ExtractorError(f"hf extractor: {self.model_dir}: not a Hugging Face model folder (no config.json)")
        self._digest = hashlib.sha256(cfg.read_bytes()).hexdigest()[:12]

    @property
    def identity(self) -> str:
        return f"hf:{Path(self.model_dir).resolve().name}:{self._digest}"

    def _load(self):
        if self._lm is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.model_dir)
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            lm = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
            self._lm, self._tok = lm.to(self.device or "cpu").eval(), tok
        return self._lm, self._tok

    def _render(self, tok, prompt: str) -> str:
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return prompt

    def _complete(self, prompts: list[str]) -> list[str | None]:
        import torch

        lm, tok = self._load()
        out: list[str | None] = []
        for i in range(0, len(prompts), self.batch_size):
            texts = [self._render(tok, p) for p in prompts[i:i + self.batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not getattr(tok, "chat_template", None)).to(lm.device)
            with torch.inference_mode():
                gen = lm.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                  pad_token_id=tok.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
        return out


# ---------------------------------------------------------------------------------------------
# lexicon (offline proxy)
# ---------------------------------------------------------------------------------------------
_POLARITY = {"happy": 1, "sad": -1, "angry": -1, "fear": -1, "disgust": -1}


@dataclass
class LexiconProxy(BaseExtractor):
    """Deterministic stand-in: emotion words by vocabulary match (extract.LexiconExtractor), the
    sentiment by majority polarity of the words' families in the built-in taxonomy."""

    ws: WheelSet | None = None
    name: str = "lexicon"

    def __post_init__(self) -> None:
        from .extract import LexiconExtractor

        self.ws = self.ws or load_wheels()
        self._lex = LexiconExtractor(self.ws)
        self._families = builtin_wheelset()

    @property
    def identity(self) -> str:
        return "lexicon:" + ("mer-unibench" if self.ws.is_mer_unibench else "builtin")

    @property
    def is_proxy(self) -> bool:
        return True

    def _compute(self, step: str, inputs: list[str]) -> list:
        if step == "emotions":
            return [self._lex.extract(t) for t in inputs]
        out = []
        for t in inputs:
            score = sum(_POLARITY.get(self._families.map_word(w, 0, "level1") or "", 0) for w in parse_label_list(t))
            out.append("positive" if score > 0 else "negative" if score < 0 else "neutral")
        return out


def make_extractor(kind: str, *, cache_dir=None, ws: WheelSet | None = None, base_url: str | None = None,
                   model: str = "default", api_key: str | None = None, hf_model: str | None = None,
                   concurrency: int = 8, retries: int = 3, device: str | None = None) -> BaseExtractor:
    if kind == "lexicon":
        return LexiconProxy(cache_dir=cache_dir, ws=ws)
    if kind == "openai":
        if not base_url:
            raise ExtractorError("the openai extractor needs --llm-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIExtractor(cache_dir=cache_dir, base_url=base_url, model=model, api_key=api_key,
                               concurrency=concurrency, retries=retries)
    if kind == "hf":
        if not hf_model:
            raise ExtractorError("the hf extractor needs --hf-model DIR (a local causal-LM folder)")
        return HFExtractor(cache_dir=cache_dir, model_dir=hf_model, device=device)
    raise ExtractorError(f"unknown extractor {kind!r} (expected one of {', '.join(EXTRACTORS)})")


def default_cache_dir() -> Path:
    base = os.environ.get("NANOEMOX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "nanoemox")
    return Path(base) / "extraction"
