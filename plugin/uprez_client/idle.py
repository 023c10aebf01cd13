"""What an idle engine looks like to a front end: its model unloaded, or the engine stopping or gone.

The engine frees its model after some idle minutes, and one started on demand exits later (engine/server/idle.py).
Neither is an error: a front end says "engine idle, model unloaded" and the next job loads the model (or starts
the engine) again.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import EngineNotRunning, UprezClientError

IDLE_UNLOADED = "engine idle, model unloaded"
IDLE_STOPPED = "engine idle, stopped; it starts again with the next upscale"
STOPPING_STATUS = 503  # every request to an engine that has decided to stop
GONE_TIMEOUT_S = 10.0  # its graceful shutdown takes at most a few seconds


def idle_note(state: Any) -> str | None:
    """IDLE_UNLOADED when a health (or GET /v1/jobs) answer says the model was unloaded for idleness."""
    if isinstance(state, dict) and state.get("idle_unloaded"):
        return IDLE_UNLOADED
    return None


def is_stopping(exc: BaseException) -> bool:
    """The engine answered that it is stopping (idle, or its window is gone): as good as not running."""
    return isinstance(exc, UprezClientError) and exc.status == STOPPING_STATUS and not isinstance(
        exc, EngineNotRunning)


def wait_until_gone(client: Any, timeout: float = GONE_TIMEOUT_S) -> None:
    """Wait for a stopping engine to let go of its port, so a new one can take it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.health()
        except EngineNotRunning:
            return
        except UprezClientError as exc:
            if not is_stopping(exc):
                return
        time.sleep(0.2)
