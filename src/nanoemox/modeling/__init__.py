"""The Nano-EmoX model: composite config, encoders, adapters, fusion, language model, presets."""
from .configuration import NanoEmoXConfig
from .modeling_nanoemox import EncoderOutputs, NanoEmoXForConditionalGeneration, NanoEmoXOutput

__all__ = ["NanoEmoXConfig", "NanoEmoXForConditionalGeneration", "NanoEmoXOutput", "EncoderOutputs"]
