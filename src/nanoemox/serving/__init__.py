"""The HTTP server (`nanoemox serve`): OpenAI-compatible chat, multipart analysis, a web page."""
from .app import create_app
from .schema import ServerSettings

__all__ = ["ServerSettings", "create_app"]
