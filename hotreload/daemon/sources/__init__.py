"""Sources of desired state for the publisher daemon (files, PostgreSQL)."""

from .base import Sink, Source

__all__ = ["Sink", "Source"]
