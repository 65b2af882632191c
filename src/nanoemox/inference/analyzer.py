"""The inference API: one clip (or arrays) + optional transcript -> answers for any of the six tasks.

    media --load_media--> MediaInput --processor--> encoder inputs --model.encode--> EncoderOutputs
                                                    (once per clip, shared by every task)
    all tasks: prompt ids --splice features--> one batched generation.decode --> texts --parse_answer--> fields

Decoding is greedy by default (deterministic); sampling is opt-in. `Analyzer.encode` /
`Analyzer.generate_batch` are the two halves, used separately by batch prediction (many samples
per generate call) and by the latency profiler. `Analyzer.analyze_many` answers many clips
together (one encoder batch, one generate per sampling group): the server's batching worker and
`analyze --task all` use it. Every row of a batch stops at its own budget (`generation.py`), so
batching never lengthens an answer, and a greedy answer is the same at any batch size.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..data.schema import TASKS
from ..errors import ConfigError
from .generation import RowControl, RowOutput, Sampling, decode
from .guards import ngram_sizes
from .parsing import ParsedAnswer, parse_answer
from .quantization import quantize_language_model

log = logging.getLogger(__name__)

DEMO_MODEL_NAME = "demo-small"
# Answer budgets per task (tokens): labels are short, rationales and empathic replies are not.
DEFAULT_MAX_NEW_TOKENS = {"mer": 32, "msa": 40, "mir": 32, "ovmer": 48, "eri": 160, "erg": 224}


def resolve_tasks(tasks: str | Iterable[str] | None, default: Sequence[str] = ("mer",)) -> list[str]:
    """'all' | 'mer,msa' | ['mer', 'erg'] -> validated task list in the given order, no repeats."""
    if tasks is None:
        return list(default)
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    out: list[str] = []
    for item in items:
        for t in str(item).replace(" ", ",").split(","):
            t = t.strip().lower()
            if not t:
                continue
            if t == "all":
                out.extend(x for x in TASKS if x not in out)
            elif t not in TASKS:
                raise ConfigError(f"unknown task {t!r} (choose from {', '.join(TASKS)} or all)")
            elif t not in out:
                out.append(t)
    return out or list(default)


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A model folder (config.json + model.safetensors) or a training output holding `model/`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: model folder not found")
    for cand in (p, p / "model"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise ConfigError(f"{p}: not a nanoemox model (expected config.json + model.safetensors here or in {p / 'model'})")


def default_model_dir() -> Path:
    from ..storage import cache_dir

    return cache_dir() / "models" / DEMO_MODEL_NAME


@dataclass
class Encoded:
    """One sample's encoder outputs (no batch dimension), kept only for the modalities its prompt
    introduces, plus what the media decoding said."""

    tensors: dict[str, torch.Tensor]
    modalities: frozenset[str]


@dataclass
class Row:
    """One (sample, task) generation request."""

    encoded: Encoded
    task: str
    transcript: str = ""
    history: Sequence[Mapping[str, str]] = ()
    candidates: Sequence[str] | None = None


@dataclass
class AnalysisRequest:
    """One clip's question for `Analyzer.analyze_many`: media (a path, a decoded `MediaInput` or
    None), transcript, history, tasks, decoding settings; `on_text` (one task only) receives the
    answer as it is decoded, `cancel` drops the request from its batch at the next token."""

    media: Any = None
    transcript: str | None = None
    history: Sequence[Mapping[str, str]] = ()
    tasks: str | Iterable[str] | None = "mer"
    candidates: Mapping[str, Sequence[str]] | None = None
    max_new_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    asr: bool | None = None
    on_text: Callable[[str], None] | None = None
    cancel: threading.Event | None = None


@dataclass
class AnalysisResult:
    results: dict[str, ParsedAnswer]
    gate: list[float] | None
    timings: dict[str, float]
    transcript: str
    transcript_source: str  # given | asr | none
    modalities: list[str]
    media: dict[str, Any] | None = None
    model: str = ""
    warnings: list[str] = field(default_factory=list)
    finish: dict[str, str] = field(default_factory=dict)  # per task: stop | length | cancelled (not serialised)
    batch_size: int = 1  # requests decoded together (not serialised)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "media": self.media,
            "modalities": self.modalities,
            "transcript": self.transcript,
            "transcript_source": self.transcript_source,
            "results": {t: r.to_dict() for t, r in self.results.items()},
            "gate": self.gate,
            "timings": self.timings,
            "warnings": self.warnings,
        }


class Analyzer:
    """A loaded model ready to answer. Not thread-safe by design: calls are serialised by a lock
    (the server runs the model in one worker thread anyway)."""

    def __init__(self, model, *, device: str | torch.device | None = None, name: str = "", asr: bool = False, quantize: str | None = None):
        from ..modeling.processing import NanoEmoXProcessor

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = quantize_language_model(model.to(self.device).eval(), quantize)  # quantize="int8": CPU only
        self.quantize = quantize
        self.tokenizer = model.tokenizer
        self.processor = NanoEmoXProcessor(model.config, model.tokenizer)
        self.name = name or f"nanoemox-{model.config.preset}"
        self.asr = asr
        self._asr_model = None
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> "Analyzer":
        from ..modeling.modeling_nanoemox import NanoEmoXForConditionalGeneration

        folder = resolve_model_dir(path)
        model = NanoEmoXForConditionalGeneration.from_pretrained(folder)
        kwargs.setdefault("name", folder.parent.name if folder.name == "model" else folder.name)
        return cls(model, **kwargs)

    @classmethod
    def from_preset(cls, preset: str = "tiny", seed: int = 0, **kwargs: Any) -> "Analyzer":
        """An untrained model of a preset; `seed` fixes its random weights (same answers every run)."""
        from ..modeling.modeling_nanoemox import NanoEmoXForConditionalGeneration

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = NanoEmoXForConditionalGeneration.from_preset(preset)
        kwargs.setdefault("name", f"nanoemox-{preset}-untrained")
        return cls(model, **kwargs)

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, preset: str | None = None, **kwargs: Any) -> "Analyzer":
        """--model DIR, else --preset NAME, else the cached demo model."""
        if model is not None and preset is not None:
            raise ConfigError("give either a model folder or a preset, not both")
        if model is not None:
            return cls.from_pretrained(model, **kwargs)
        if preset is not None:
            return cls.from_preset(preset, **kwargs)
        demo = default_model_dir()
        if not (demo / "config.json").is_file():
            raise ConfigError(f"no trained model at {demo}: run `nanoemox demo` first, or pass --model DIR (or --preset tiny for an untrained model)")
        return cls.from_pretrained(demo, **kwargs)

    # ---------------------------------------------------------------- media
    def media_config(self, **overrides: Any):
        return self.processor.media_config(**overrides)

    def load_media(self, path: str | os.PathLike | None = None, *, frames=None, waveform=None, sample_rate: int = 16000, **cfg_overrides: Any):
        """Decode a file, or wrap in-memory frames / waveform, the way this model wants them."""
        from ..data.media import load_media, media_from_arrays

        cfg = self.media_config(**cfg_overrides)
        if path is not None:
            return load_media(path, cfg)
        if frames is None and waveform is None:
            return None
        return media_from_arrays(frames=frames, waveform=waveform, sample_rate=sample_rate, cfg=cfg)

    def transcribe(self, waveform: np.ndarray) -> str:
        """Speech -> text with faster-whisper on the bundled Whisper tiny.en (CTranslate2). Voice
        activity detection keeps silence and noise from being transcribed as hallucinated words."""
        if self._asr_model is None:
            from faster_whisper import WhisperModel

            from ..modeling.pretrained.whisper import whisper_ct2_dir

            self._asr_model = WhisperModel(str(whisper_ct2_dir()), device="cpu", compute_type="int8", cpu_threads=max(1, torch.get_num_threads()))
        wav = np.asarray(waveform, dtype=np.float32)
        if wav.size == 0 or float(np.max(np.abs(wav))) < 1e-3:
            return ""
        segments, _ = self._asr_model.transcribe(wav, language="en", beam_size=1, vad_filter=True, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments if s.no_speech_prob < 0.8 and s.text.strip()).strip()

    # ---------------------------------------------------------------- the two halves
    @torch.no_grad()
    def encode(self, medias: Sequence[Any]) -> list[Encoded]:
        """Run the encoders once for a batch of decoded media (None = text only)."""
        from ..modeling.processing import keep_encoded, stack_tensors

        mods = [self.processor.present_modalities(m) if m is not None else frozenset() for m in medias]
        per_sample = [self.processor.media_tensors(m, ms) if ms else {} for m, ms in zip(medias, mods)]
        if not any(per_sample):
            return [Encoded({}, ms) for ms in mods]
        # a modality missing from some samples: zeros with an all-False mask
        batch = {k: v.to(self.device) for k, v in stack_tensors(per_sample).items()}
        with self._lock:
            enc = self.model.encode(**batch).to_dict()
        out = []
        for i, ms in enumerate(mods):
            out.append(Encoded(keep_encoded({k: v[i] for k, v in enc.items()}, ms), ms))
        return out

    @torch.no_grad()
    def generate_batch(self, rows: Sequence[Row], controls: Sequence[RowControl], sampling: Sampling = Sampling()) -> list[RowOutput]:
        """One generate call for all rows (left-padded), each row stopping at its own budget,
        cancel flag or end token and streaming its own text (see `generation.decode`)."""
        from ..modeling.processing import Example

        if not rows:
            return []
        examples = []
        for r in rows:
            ids, _ = self.processor.tokenize(r.task, r.encoded.modalities, r.transcript or "", r.history or (), r.candidates)
            examples.append(Example(input_ids=ids, encoder_outputs=r.encoded.tensors, task=r.task, modalities=r.encoded.modalities))
        batch = self.processor.collate(examples)
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        with self._lock:
            feats, gate = self.model.project(batch["encoder_outputs"].to(self.device))
            embeds = self.model.splice(ids, feats)  # (B, L, D)
            outs = decode(self.model.language_model, embeds, mask, controls, sampling, self.tokenizer, self._eos_ids(),
                          suppress=self._suppress_ids(), ngram=ngram_sizes([r.task for r in rows]))  # per-task repetition guard
        if gate is not None:
            g = gate.float().cpu()
            for i, o in enumerate(outs):
                if not bool(torch.isnan(g[i]).any()):
                    o.gate = [round(float(x), 6) for x in g[i]]
        return outs

    def generate(
        self,
        rows: Sequence[Row],
        max_new_tokens: int | Sequence[int] | None = None,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        cancel: threading.Event | None = None,
    ) -> list[tuple[str, list[float] | None]]:
        """(decoded answer, gate or None) per row from one generate call; `max_new_tokens` is one
        budget for all rows, one per row, or None (each task's default). `cancel` stops decoding
        at the next token when set (timeouts, gone clients)."""
        if isinstance(max_new_tokens, (int, type(None))):
            budgets = [max_new_tokens or DEFAULT_MAX_NEW_TOKENS[r.task] for r in rows]
        else:
            budgets = [int(b) for b in max_new_tokens]
        controls = [RowControl(b, cancel) for b in budgets]
        outs = self.generate_batch(rows, controls, Sampling(do_sample, temperature, top_p, seed))
        return [(o.text, o.gate) for o in outs]

    # ---------------------------------------------------------------- clips, several tasks each
    def analyze(
        self,
        media: str | os.PathLike | Any | None = None,
        *,
        frames=None,
        waveform=None,
        sample_rate: int = 16000,
        transcript: str | None = None,
        history: Sequence[Mapping[str, str]] = (),
        tasks: str | Iterable[str] | None = "mer",
        candidates: Mapping[str, Sequence[str]] | None = None,
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        asr: bool | None = None,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> AnalysisResult:
        """Answer `tasks` about one clip: a path, a decoded `MediaInput`, or frames / waveform arrays
        (or nothing: text only). The encoders run once and all tasks decode in one batched
        generate, each to its own budget. `asr` (default: the analyzer's setting) transcribes
        speech when no transcript is given. `on_text` receives the answer as it is decoded."""
        t0 = time.perf_counter()
        if media is None and (frames is not None or waveform is not None):
            media = self.load_media(None, frames=frames, waveform=waveform, sample_rate=sample_rate)
        wrap_s = time.perf_counter() - t0
        req = AnalysisRequest(media, transcript, history, tasks, candidates, max_new_tokens,
                              Sampling(do_sample, temperature, top_p, seed), asr, on_text, cancel)
        (result,) = self.analyze_many([req])
        result.timings["preprocess_s"] = round(result.timings["preprocess_s"] + wrap_s, 4)
        return result

    def analyze_many(self, requests: Sequence[AnalysisRequest], *, return_exceptions: bool = False) -> list[AnalysisResult | Exception]:
        """Answer many requests together: their media decoded one by one, encoded in one batch per
        encoder, and every (request, task) row decoded in one generate per group of compatible
        sampling settings (`Sampling.group_key`). With `return_exceptions`, a request that fails
        (bad media, bad task) yields its exception in its slot and the others carry on."""
        prepared: list[Any] = []
        for req in requests:
            try:
                prepared.append(self._prepare(req))
            except Exception as e:
                if not return_exceptions:
                    raise
                prepared.append(e)
        ok = [i for i, p in enumerate(prepared) if not isinstance(p, Exception)]
        t = time.perf_counter()
        encoded = dict(zip(ok, self.encode([prepared[i]["media"] for i in ok]))) if ok else {}
        self._sync()
        encode_s = time.perf_counter() - t

        groups: dict[tuple, list[tuple[int, str, Row, RowControl]]] = {}
        for i in ok:
            req, p = requests[i], prepared[i]
            for task in p["tasks"]:
                row = Row(encoded[i], task, p["transcript"], req.history or (), (req.candidates or {}).get(task))
                ctrl = RowControl(req.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task], req.cancel, req.on_text)
                groups.setdefault(req.sampling.group_key(i), []).append((i, task, row, ctrl))
        answers: dict[tuple[int, str], RowOutput] = {}
        t = time.perf_counter()
        for items in groups.values():
            outs = self.generate_batch([x[2] for x in items], [x[3] for x in items], requests[items[0][0]].sampling)
            answers.update({(i, task): o for (i, task, _, _), o in zip(items, outs)})
        self._sync()
        generate_s = time.perf_counter() - t
        return [p if isinstance(p, Exception) else
                self._result(p, encoded[i], {task: answers[(i, task)] for task in p["tasks"]}, encode_s, generate_s, len(ok))
                for i, p in enumerate(prepared)]

    def _prepare(self, req: AnalysisRequest) -> dict[str, Any]:
        """Decode (if a path), transcribe (if asked and needed); timings of this request alone."""
        task_list = resolve_tasks(req.tasks)
        if req.on_text is not None and len(task_list) != 1:
            raise ConfigError("streaming needs exactly one task")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        media = req.media
        decoded = self.load_media(media) if media is None or isinstance(media, (str, os.PathLike)) else media
        timings["preprocess_s"] = time.perf_counter() - t0
        transcript = (req.transcript or "").strip()
        source = "given" if transcript else "none"
        use_asr = self.asr if req.asr is None else req.asr
        if not transcript and use_asr and decoded is not None and decoded.audio is not None:
            t = time.perf_counter()
            transcript = self.transcribe(decoded.audio)
            timings["asr_s"] = time.perf_counter() - t
            source = "asr" if transcript else "none"
        return {"tasks": task_list, "media": decoded, "transcript": transcript, "source": source, "timings": timings}

    def _result(self, p: dict[str, Any], encoded: Encoded, outs: dict[str, RowOutput], encode_s: float, generate_s: float, batch: int) -> AnalysisResult:
        decoded = p["media"]
        timings = {k: round(v, 4) for k, v in {**p["timings"], "encode_s": encode_s, "generate_s": generate_s}.items()}
        media_info, warnings = None, []
        if decoded is not None:
            warnings = list(decoded.warnings)
            media_info = {
                "path": None if decoded.path is None else Path(decoded.path).name,
                "duration_s": None if decoded.duration_s is None else round(float(decoded.duration_s), 3),
                "has_video": decoded.frames is not None,
                "has_audio": decoded.audio is not None,
                "faces": None if decoded.face_mask is None else int(np.sum(decoded.face_mask)),
            }
        return AnalysisResult(
            results={task: parse_answer(task, o.text) for task, o in outs.items()},
            gate=next((o.gate for o in outs.values() if o.gate is not None), None),
            timings=timings, transcript=p["transcript"], transcript_source=p["source"], modalities=sorted(encoded.modalities),
            media=media_info, model=self.name, warnings=warnings,
            finish={task: o.finish for task, o in outs.items()}, batch_size=batch,
        )

    # ---------------------------------------------------------------- plain chat (no task prompt)
    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 128, *, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None, on_text: Callable[[str], None] | None = None,
             cancel: threading.Event | None = None) -> str:
        """The language model alone on a text conversation (no media, no task template): lets the
        server act as the text LLM that the evaluation's extractor / judge talk to."""
        (out,) = self.chat_many([messages], [RowControl(max_new_tokens, cancel, on_text)], Sampling(do_sample, temperature, top_p, seed))
        return out.text

    @torch.no_grad()
    def chat_many(self, conversations: Sequence[Sequence[Mapping[str, str]]], controls: Sequence[RowControl],
                  sampling: Sampling = Sampling()) -> list[RowOutput]:
        """Several text conversations in one left-padded LM generate (see `chat`)."""
        from ..prompts import sanitize_user_text

        tok, max_len = self.tokenizer, self.model.config.text.max_length
        prompts = []
        for messages in conversations:
            msgs = [{"role": m["role"], "content": sanitize_user_text(m["content"])} for m in messages]
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            prompts.append(tok(text, add_special_tokens=False)["input_ids"][-max_len:])
        L = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), L), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, L - len(p):] = 1

        with self._lock:
            lm = self.model.language_model
            embeds = lm.get_input_embeddings()(ids.to(self.device))  # (B, L, D)
            return decode(lm, embeds, mask.to(self.device), controls, sampling, tok, self._eos_ids(), suppress=self._suppress_ids())

    def _suppress_ids(self) -> list[int]:
        return list(self.model.placeholder_ids.values())  # a placeholder is never an answer token

    def _eos_ids(self) -> list[int]:
        tok = self.tokenizer
        extra = [tok.convert_tokens_to_ids("<|endoftext|>")] if "<|endoftext|>" in tok.get_vocab() else []
        return sorted({tok.eos_token_id, *extra})

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

