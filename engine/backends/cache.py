"""The loaded model a long-lived caller keeps between jobs: the server's runner has one, scripts another."""

from __future__ import annotations

import threading

from engine.backends.base import FlowBackend
from engine.backends.loader import load_backend
from engine.settings import ModelSpec


def load_spec(spec: ModelSpec) -> FlowBackend:
    """The model `spec` names, loaded now (a one-off caller such as the command line needs no cache)."""
    return load_backend(spec.source, device=spec.device, dtype=spec.dtype, offload=spec.offload, base=spec.base,
                        memory=spec.memory, quantize=spec.quantize)


class ModelCache:
    """One loaded model at a time: asking for another frees the previous one first (both would not fit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: tuple[ModelSpec, FlowBackend] | None = None

    def get(self, spec: ModelSpec) -> FlowBackend:
        """The model for `spec`: the one kept if it is the same, else loaded (and kept)."""
        with self._lock:
            if self._loaded is not None and self._loaded[0] == spec:
                return self._loaded[1]
            self._loaded = None  # drop the old model before loading the next, or both would sit in memory
            backend = load_spec(spec)
            self._loaded = (spec, backend)
            return backend

    def put(self, spec: ModelSpec, backend: FlowBackend) -> None:
        """Keep an already built backend as the one `spec` loads (a caller that made it itself)."""
        with self._lock:
            self._loaded = (spec, backend)

    def release(self) -> bool:
        """Forget the loaded model; True if one was kept. Its memory goes back once nothing else holds it."""
        with self._lock:
            released, self._loaded = self._loaded is not None, None
        return released
