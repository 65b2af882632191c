"""Real pretrained parts of the `small` preset, loaded offline from pip wheels.

Each is converted once into `nanoemox.storage.cache_dir()` (atomically, under a file lock) and
loaded from there afterwards:
- SmolLM2-135M-Instruct (language model): `smollm2_dir()` -> HF folder for AutoModelForCausalLM.
- Whisper tiny.en (audio encoder + ASR): `whisper_encoder_dir()`, `load_whisper_encoder()`,
  `log_mel()`; `whisper_ct2_dir()` for faster-whisper.
- FER2013 mini-Xception (face backbone): `load_fer()`, `preprocess_faces()`, `FER_LABELS`.
"""
from .fer import FER_LABELS, FerOutput, MiniXception, fer_dir, load_fer, preprocess_faces
from .smollm2 import smollm2_dir
from .whisper import load_whisper_encoder, log_mel, read_ct2_model, whisper_ct2_dir, whisper_encoder_dir

__all__ = [
    "FER_LABELS",
    "FerOutput",
    "MiniXception",
    "fer_dir",
    "load_fer",
    "preprocess_faces",
    "smollm2_dir",
    "load_whisper_encoder",
    "log_mel",
    "read_ct2_model",
    "whisper_ct2_dir",
    "whisper_encoder_dir",
]
