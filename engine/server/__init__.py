"""The local engine server the editor bridges talk to (docs/protocol.md); `uprez serve` starts it."""

from __future__ import annotations

from typing import Any

from engine.server.config import DEFAULT_PORT, Limits, ServerConfig

__all__ = ["DEFAULT_PORT", "Limits", "RunningServer", "ServerConfig", "serve", "start_in_thread"]


def __getattr__(name: str) -> Any:
    # Lazy: `uprez upscale` builds the serve parser too, and should not pay for importing the web stack.
    if name in ("RunningServer", "serve", "start_in_thread"):
        from engine.server import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
