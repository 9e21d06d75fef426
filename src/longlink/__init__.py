"""longlink: a self-hosted long-connection real-time push service."""

__version__ = "0.1.0"
