"""Question answering over an archive of Chinese newspaper issues."""

__version__ = "0.1.0"
