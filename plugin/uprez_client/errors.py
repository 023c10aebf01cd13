"""What can go wrong talking to the engine, one type per thing a bridge does differently."""

from __future__ import annotations


class UprezClientError(Exception):
    """Base of every client error; `message` is the engine's own words where it sent any."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class EngineNotRunning(UprezClientError):
    """Nothing answers at the engine's URL (or it stopped answering)."""


class Unauthorized(UprezClientError):
    """The engine refused our token (401) or our Host name (421)."""


class WrongCertificate(UprezClientError):
    """A remote engine showed a certificate other than the one pinned in its connection string (no token was sent)."""


class RejectedInput(UprezClientError):
    """The engine refused the request (4xx): bad image, parameters, size or an unknown job."""


class QueueFull(RejectedInput):
    """The engine's queue is full (429); try again after `retry_after` seconds."""

    def __init__(self, message: str, status: int = 429, retry_after: float = 5.0) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class EngineError(UprezClientError):
    """The engine failed on its side (5xx) or answered something this client does not understand."""


class JobFailed(UprezClientError):
    """The job ran and failed; the message says why and what to change."""


class JobCancelled(UprezClientError):
    """The job was cancelled (by this client, another one, or the engine shutting down)."""
