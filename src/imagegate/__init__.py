"""imagegate: a self-hosted, OpenAI-compatible image-edit gateway."""

__version__ = "0.1.0"
