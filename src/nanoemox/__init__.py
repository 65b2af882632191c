"""Nano-EmoX: perception-to-empathy multimodal affect model."""
__version__ = "0.1.0"
