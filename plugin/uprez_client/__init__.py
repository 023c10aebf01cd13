"""Client for the local Uprez engine, shared by the Krita and GIMP bridges: standard library only, Python 3.8+."""

from .client import Client, EventStream
from .discovery import DEFAULT_PORT, DEFAULT_URL, config_dir, engine_url, read_token
from .errors import (
    EngineError,
    EngineNotRunning,
    JobCancelled,
    JobFailed,
    QueueFull,
    RejectedInput,
    Unauthorized,
    UprezClientError,
    WrongCertificate,
)
from .remote_job import JobEvent, RemoteJob, ResultInfo, status_text

__all__ = [
    "DEFAULT_PORT", "DEFAULT_URL", "Client", "EngineError", "EngineNotRunning", "EventStream", "JobCancelled",
    "JobEvent", "JobFailed", "QueueFull", "RejectedInput", "RemoteJob", "ResultInfo", "Unauthorized",
    "UprezClientError", "WrongCertificate", "config_dir", "engine_url", "read_token", "status_text",
]
