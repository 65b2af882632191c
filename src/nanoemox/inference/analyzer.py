"""The inference API: one clip (or arrays) + optional transcript -> answers for any of the six tasks.

    media --load_media--> MediaInput --processor--> encoder inputs --model.encode--> EncoderOutputs
                                                    (once per clip, shared by every task)
    per task: prompt ids --model.generate(encoder_outputs=...)--> text --parse_answer--> fields

Decoding is greedy by default (deterministic); sampling is opt-in. `Analyzer.encode` /
`Analyzer.generate` are the two halves, used separately by batch prediction (many samples per
generate call) and by the latency profiler.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..data.schema import TASKS
from ..errors import ConfigError
from .parsing import ParsedAnswer, parse_answer

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

    def __init__(self, model, *, device: str | torch.device | None = None, name: str = "", asr: bool = False):
        from ..modeling.processing import NanoEmoXProcessor

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
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
    def generate(
        self,
        rows: Sequence[Row],
        max_new_tokens: int | None = None,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        streamer=None,
        cancel: threading.Event | None = None,
    ) -> list[tuple[str, list[float] | None]]:
        """One generate call for all rows (left-padded); returns (decoded answer, gate or None) per
        row. `cancel` stops decoding at the next token when set (timeouts, gone clients)."""
        from ..modeling.processing import Example

        if not rows:
            return []
        examples = []
        for r in rows:
            ids, _ = self.processor.tokenize(r.task, r.encoded.modalities, r.transcript or "", r.history or (), r.candidates)
            examples.append(Example(input_ids=ids, encoder_outputs=r.encoded.tensors, task=r.task, modalities=r.encoded.modalities))
        batch = self.processor.collate(examples)
        n_new = max_new_tokens or max(DEFAULT_MAX_NEW_TOKENS[r.task] for r in rows)
        kwargs: dict[str, Any] = {}
        if do_sample:
            kwargs.update(temperature=max(float(temperature), 1e-5), top_p=float(top_p), top_k=None)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if cancel is not None:
            kwargs["stopping_criteria"] = _stop_on(cancel)
        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
            ids, gate = self.model.generate(
                batch["input_ids"].to(self.device),
                batch["attention_mask"].to(self.device),
                encoder_outputs=batch["encoder_outputs"].to(self.device),
                max_new_tokens=int(n_new),
                do_sample=do_sample,
                return_gate=True,
                **kwargs,
            )
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        gates: list[list[float] | None] = [None] * len(rows)
        if gate is not None:
            g = gate.float().cpu()
            for i in range(len(rows)):
                if not bool(torch.isnan(g[i]).any()):
                    gates[i] = [round(float(x), 6) for x in g[i]]
        return [(t.strip(), gi) for t, gi in zip(texts, gates)]

    # ---------------------------------------------------------------- one clip, several tasks
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
        streamer=None,
        cancel: threading.Event | None = None,
    ) -> AnalysisResult:
        """Answer `tasks` about one clip: a path, a decoded `MediaInput`, or frames / waveform arrays
        (or nothing: text only). The encoders run once; tasks sharing an answer budget share one
        generate call. `asr` (default: the analyzer's setting) transcribes speech when no
        transcript is given."""
        task_list = resolve_tasks(tasks)
        if streamer is not None and len(task_list) != 1:
            raise ConfigError("streaming needs exactly one task")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if media is None or isinstance(media, (str, os.PathLike)):
            decoded = self.load_media(media, frames=frames, waveform=waveform, sample_rate=sample_rate)
        else:
            decoded = media  # already a MediaInput
        timings["preprocess_s"] = time.perf_counter() - t0

        transcript = (transcript or "").strip()
        source = "given" if transcript else "none"
        use_asr = self.asr if asr is None else asr
        if not transcript and use_asr and decoded is not None and decoded.audio is not None:
            t = time.perf_counter()
            transcript = self.transcribe(decoded.audio)
            timings["asr_s"] = time.perf_counter() - t
            source = "asr" if transcript else "none"

        t = time.perf_counter()
        (encoded,) = self.encode([decoded])
        self._sync()
        timings["encode_s"] = time.perf_counter() - t

        # Group tasks by answer budget so short answers are not decoded as long as the longest.
        groups: dict[int, list[str]] = {}
        for task in task_list:
            groups.setdefault(max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task], []).append(task)
        raw: dict[str, tuple[str, list[float] | None]] = {}
        t = time.perf_counter()
        for budget, group in groups.items():
            rows = [Row(encoded, task, transcript, history, (candidates or {}).get(task)) for task in group]
            outs = self.generate(rows, budget, do_sample=do_sample, temperature=temperature, top_p=top_p, seed=seed, streamer=streamer, cancel=cancel)
            raw.update(zip(group, outs))
        self._sync()
        timings["generate_s"] = time.perf_counter() - t
        timings = {k: round(v, 4) for k, v in timings.items()}

        results = {task: parse_answer(task, raw[task][0]) for task in task_list}
        gate = next((g for _, g in raw.values() if g is not None), None)
        media_info = None
        warnings: list[str] = []
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
            results=results,
            gate=gate,
            timings=timings,
            transcript=transcript,
            transcript_source=source,
            modalities=sorted(encoded.modalities),
            media=media_info,
            model=self.name,
            warnings=warnings,
        )

    # ---------------------------------------------------------------- plain chat (no task prompt)
    @torch.no_grad()
    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 128, *, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, streamer=None, cancel: threading.Event | None = None) -> str:
        """The language model alone on a text conversation (no media, no task template): lets the
        server act as the text LLM that the evaluation's extractor / judge talk to."""
        from ..prompts import sanitize_user_text

        msgs = [{"role": m["role"], "content": sanitize_user_text(m["content"])} for m in messages]
        prompt = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -self.model.config.text.max_length :]
        ids = ids.to(self.device)
        kwargs: dict[str, Any] = {}
        if do_sample:
            kwargs.update(temperature=max(float(temperature), 1e-5), top_p=float(top_p), top_k=None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if cancel is not None:
            kwargs["stopping_criteria"] = _stop_on(cancel)
        tok = self.tokenizer
        with self._lock:
            out = self.model.language_model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=int(max_new_tokens), do_sample=do_sample,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, suppress_tokens=list(self.model.placeholder_ids.values()), **kwargs,
            )
        return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _stop_on(cancel: threading.Event):
    """Stopping criteria that end decoding at the next token once `cancel` is set."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Cancelled()])
