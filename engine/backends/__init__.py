"""Model backends: one interface (`FlowBackend`) for every flow-matching family."""

from engine.backends.base import Conditioning, FlowBackend
from engine.backends.loader import load_backend

__all__ = ["Conditioning", "FlowBackend", "load_backend"]
