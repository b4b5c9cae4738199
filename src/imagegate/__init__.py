"""imagegate: a self-hosted, OpenAI-compatible image gateway."""

__version__ = "0.1.0"
