"""Training data, decoded once: per-sample encoder inputs for encoders the recipe trains, and
cached encoder outputs for encoders that are frozen (each runs once per sample per fingerprint)."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import torch

from ..data.schema import AffectSample
from ..errors import NanoEmoXError
from ..modeling.modeling_nanoemox import NanoEmoXForConditionalGeneration
from ..modeling.processing import ENCODER_KEYS, NanoEmoXProcessor

log = logging.getLogger(__name__)
ENCODERS = ENCODER_KEYS  # encoder name -> its input / mask / output keys (the trainer's name for it)


@dataclass
class PreparedSample:
    sample: AffectSample
    media: dict[str, torch.Tensor] = field(default_factory=dict)  # inputs of encoders that train
    encoded: dict[str, torch.Tensor] = field(default_factory=dict)  # outputs of frozen encoders + masks


def encoder_fingerprint(model: NanoEmoXForConditionalGeneration, name: str, processor_key: str) -> str:
    """Hash of an encoder's weights and of the preprocessing: a trained encoder gets a new key."""
    h = hashlib.sha1(processor_key.encode())
    for k, v in sorted(getattr(model, name).state_dict().items()):
        h.update(k.encode())
        t = v.detach().float().contiguous()
        h.update(t.numpy().tobytes() if t.numel() < 2_000_000 else t.flatten()[::97].numpy().tobytes())
    return h.hexdigest()[:16]


class PreparedData:
    """Decodes every sample's media once and keeps what training needs in memory."""

    def __init__(self, model: NanoEmoXForConditionalGeneration, processor: NanoEmoXProcessor, samples: list[AffectSample], trained_encoders: set[str], cache=None, progress: bool = True):
        from ..data.media import load_media

        self.model = model
        self.processor = processor
        self.cache = cache
        self.trained_encoders = trained_encoders
        self.items: dict[str, PreparedSample] = {}
        self.bad: list[tuple[str, str]] = []
        self._raw_inputs: dict[str, dict[str, torch.Tensor]] = {}  # frozen encoders' inputs, until encoded
        self.processor_key = repr(processor.media_config())
        mcfg = processor.media_config()
        bar = _progress(samples, "decoding media", progress)
        for s in bar:
            path = s.media_path()
            try:
                media = load_media(path, mcfg) if path else None
            except NanoEmoXError as e:
                self.bad.append((s.id, str(e)))
                continue
            mods = processor.present_modalities(media)
            tensors = processor.media_tensors(media, mods) if media is not None else {}
            item = PreparedSample(sample=s)
            for enc, keys in ENCODER_KEYS.items():
                if keys.mask in tensors:
                    item.encoded[keys.mask] = tensors[keys.mask]
                    target = item.media if enc in trained_encoders else self._raw_inputs.setdefault(s.id, {})
                    target[keys.input] = tensors[keys.input]
                    if enc in trained_encoders:
                        item.media[keys.mask] = tensors[keys.mask]
            self.items[s.id] = item
        if self.bad:
            log.warning("%d sample(s) skipped: %s", len(self.bad), "; ".join(f"{i}: {r}" for i, r in self.bad[:3]))

    def refresh_encoded(self, frozen: set[str], progress: bool = True, batch_size: int = 8) -> None:
        """Make sure every sample holds outputs of each encoder in `frozen`, computed with its
        current weights (disk cache keyed by sample + fingerprint)."""
        for enc in sorted(frozen):
            keys = ENCODER_KEYS[enc]
            fp = encoder_fingerprint(self.model, enc, self.processor_key)
            todo = []
            for sid, item in self.items.items():
                if keys.mask not in item.encoded:
                    continue  # modality absent for this sample
                if item.encoded.get("_fp_" + enc) == fp:
                    continue
                hit = self.cache.get(f"{sid}:{_media_key(item.sample)}", f"{enc}:{fp}") if self.cache else None
                if hit is not None:
                    item.encoded.update(hit)
                    item.encoded["_fp_" + enc] = fp
                else:
                    todo.append(sid)
            if not todo:
                continue
            module = getattr(self.model, enc)
            module.eval()  # frozen: no dropout / layerdrop, so features are reproducible
            bar = _progress(range(0, len(todo), batch_size), f"encoding {enc.replace('_', ' ')}", progress)
            for start in bar:
                ids = todo[start : start + batch_size]
                srcs = [self.items[i].media if enc in self.trained_encoders else self._raw_inputs[i] for i in ids]
                with torch.no_grad():
                    x = torch.stack([s[keys.input] for s in srcs])
                    out = module(x)
                out = out if isinstance(out, tuple) else (out,)
                for j, sid in enumerate(ids):
                    tensors = {f: o[j].contiguous() for f, o in zip(keys.outputs, out)}
                    self.items[sid].encoded.update(tensors)
                    self.items[sid].encoded["_fp_" + enc] = fp
                    if self.cache is not None:
                        self.cache.put(f"{sid}:{_media_key(self.items[sid].sample)}", f"{enc}:{fp}", tensors)
        # Inputs of encoders that never train are not needed once encoded.
        if frozen >= set(ENCODER_KEYS) - self.trained_encoders:
            self._raw_inputs.clear()

    def encoder_outputs(self, sid: str, frozen: set[str]) -> dict[str, torch.Tensor]:
        item = self.items[sid]
        out = {}
        for enc, keys in ENCODER_KEYS.items():
            if keys.mask in item.encoded and enc in frozen:
                out.update({f: item.encoded[f] for f in keys.outputs})
                out[keys.mask] = item.encoded[keys.mask]
        return out


def _media_key(sample: AffectSample) -> str:
    path = sample.media_path()
    if not path:
        return "none"
    try:
        from ..data.features import media_fingerprint

        return media_fingerprint(path)
    except (ImportError, OSError):
        return hashlib.sha1(str(path).encode()).hexdigest()[:16]


def _progress(it, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
