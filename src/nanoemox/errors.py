"""Error types. The CLI prints any `NanoEmoXError` as one line (`error: ...`) and exits 2."""


class NanoEmoXError(Exception):
    """Base class for errors that are the user's input's fault, shown without a traceback."""


class MediaError(NanoEmoXError):
    """A media file that cannot be used, with the path and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(NanoEmoXError):
    """A config, recipe or preset that cannot be built."""


class DataError(NanoEmoXError):
    """A manifest or annotation file that cannot be read."""


class PlaceholderCountError(NanoEmoXError, ValueError):
    """The prompt's placeholder tokens do not match the number of modality features."""
