"""Errors as a person reads them: what went wrong and what to do next (shown in the window's banner)."""

from __future__ import annotations

from dataclasses import dataclass

from plugin.uprez_client import (
    EngineError,
    EngineNotRunning,
    JobCancelled,
    JobFailed,
    QueueFull,
    RejectedInput,
    Unauthorized,
)
from ui.imageio import BadImage

MEMORY_WORDS = ("out of memory", "memory")


@dataclass(frozen=True)
class Advice:
    """`text` for the banner; `retry` when pressing Retry can help (e.g. the engine came back)."""

    text: str
    retry: bool = False


def explain(exc: BaseException, context: str = "") -> Advice:
    """The banner text for an error raised while talking to the engine or reading a file."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    prefix = f"{context}: " if context else ""
    if isinstance(exc, BadImage):
        return Advice(f"{message}. Open a PNG, JPEG, WebP or TIFF image (8 or 16-bit, with or without alpha); "
                      "the image already open stays as it was.")
    if isinstance(exc, EngineNotRunning):
        return Advice(f"{prefix}{message}. Start the engine in a terminal with `uprez serve`, then press Retry.",
                      retry=True)
    if isinstance(exc, Unauthorized):
        return Advice(f"{prefix}{message}. The engine refused this window's token: restart the engine with "
                      "`uprez serve`, or set UPREZ_TOKEN to the token of an engine on another machine, then Retry.",
                      retry=True)
    if isinstance(exc, QueueFull):
        return Advice(f"The engine's queue is full ({message}); try again in about {exc.retry_after:.0f} s.",
                      retry=False)
    if isinstance(exc, RejectedInput) and "model" in message.lower():
        return Advice(f"{prefix}{message}. Choose another model in the Model list, or install this one "
                      "(`uprez models recommend`, then `uprez models pull <repo id>`), then press Upscale again.")
    if isinstance(exc, (JobFailed, EngineError)) and any(w in message.lower() for w in MEMORY_WORDS):
        return Advice(f"{prefix}the engine ran out of memory ({message}). Try a smaller scale, a smaller tile size "
                      "(Advanced), or draw a region to upscale only part of the image.")
    if isinstance(exc, RejectedInput):
        return Advice(f"{prefix}the engine refused the job: {message}. Change the setting it names and press "
                      "Upscale again.")
    if isinstance(exc, JobCancelled):
        return Advice("The job was cancelled; nothing was changed. Press Upscale to run it again.")
    if isinstance(exc, JobFailed):
        return Advice(f"{prefix}the upscale failed: {message}. Your image and settings are kept; change a setting "
                      "or press Upscale to try again.")
    if isinstance(exc, EngineError):
        return Advice(f"{prefix}the engine reported an internal error: {message}. Restart it (`uprez serve`) and "
                      "try again; if it happens again, please report it.", retry=True)
    if isinstance(exc, FileExistsError):
        return Advice(f"{message}; nothing was written. Choose another name.")
    if isinstance(exc, OSError):
        return Advice(f"{prefix}{exc.strerror or message} ({getattr(exc, 'filename', '') or ''}). "
                      "Check the folder exists and you may write there.")
    if isinstance(exc, ValueError):
        return Advice(f"{prefix}{message}.")
    return Advice(f"{prefix}unexpected error {type(exc).__name__}: {message}. Your image and settings are kept.")
