"""The HTTP server (`nanoemox serve`): OpenAI-compatible chat, multipart analysis, a web page."""
from .app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
