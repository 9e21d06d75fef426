"""Dispatch layer: consumes the priority queues and routes messages to gateway nodes."""

from longlink.dispatch.dispatcher import Dispatcher

__all__ = ["Dispatcher"]
