"""The Nano-EmoX model: composite config, encoders, adapters, fusion, language model, presets.

Importing this package registers the model with transformers' Auto classes (model type
"nanoemox"), so `AutoModel.from_pretrained(folder)` loads a saved nanoemox folder."""
from .configuration import NanoEmoXConfig
from .modeling_nanoemox import NanoEmoXForConditionalGeneration
from .outputs import IGNORE_INDEX, EncoderOutputs, NanoEmoXOutput

__all__ = ["NanoEmoXConfig", "NanoEmoXForConditionalGeneration", "NanoEmoXOutput", "EncoderOutputs", "IGNORE_INDEX"]
