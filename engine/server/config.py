"""Server settings, their environment defaults, and the files the server shares with the bridges."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.server.idle import IdlePolicy
from plugin.uprez_client.protocol import DEFAULT_HOST, DEFAULT_PORT, ENGINE_FILE, config_dir


def uprez_config_dir() -> Path:
    """The user's Uprez config folder: the one the bridges' client computes (uprez_client.protocol.config_dir)."""
    return Path(config_dir())


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"environment variable {name} must be a number, got {text!r}") from None


@dataclass(frozen=True)
class Limits:
    """What one request may bring: refused with 413 before any decoding or model work."""

    max_upload_bytes: int = 512 * 2**20  # an 8K x 8K RGBA 16-bit raw buffer is exactly this
    max_pixels: int = 64 * 2**20  # input width x height (an 8192 x 8192 layer)
    max_output_pixels: int = 256 * 2**20  # output width x height (16384 x 16384)
    # Bodies read at once, and their declared bytes together: concurrent uploads cannot add up past this.
    max_uploads_in_flight: int = 4
    max_upload_bytes_in_flight: int = 1024 * 2**20

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults overridden by UPREZ_MAX_UPLOAD_MB, UPREZ_MAX_PIXELS and UPREZ_MAX_OUTPUT_PIXELS."""
        return cls(
            max_upload_bytes=int(_env_number("UPREZ_MAX_UPLOAD_MB", cls.max_upload_bytes / 2**20) * 2**20),
            max_pixels=int(_env_number("UPREZ_MAX_PIXELS", cls.max_pixels)),
            max_output_pixels=int(_env_number("UPREZ_MAX_OUTPUT_PIXELS", cls.max_output_pixels)),
        )


def _env_model_dirs() -> tuple[Path, ...]:
    text = os.environ.get("UPREZ_MODEL_DIRS", "")
    return tuple(Path(part).expanduser() for part in text.split(os.pathsep) if part.strip())


@dataclass(frozen=True)
class ServerConfig:
    """Everything `uprez serve` was told; one object handed to the app, the job queue and the runner."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 = any free port (the chosen one is written to engine.json)
    model: str | None = None  # used by jobs that name no model, and loaded at start
    base: str | None = None
    quantize: str | None = None  # "nf4"/"int8": bitsandbytes on every transformer loaded (CUDA only)
    device: str = "auto"
    dtype: str = "auto"
    offload: bool = False
    memory: str | None = None  # auto, gpu, model-offload, group-offload, sequential; None = auto (or --offload)
    max_memory: int | None = None  # bytes; None = what the device has free
    model_dirs: tuple[Path, ...] = ()  # folders scanned for models to list in GET /v1/models
    queue_size: int = 8  # jobs waiting behind the running one; more get 429
    result_ttl: float = 600.0  # seconds a finished job (and its result) is kept
    allowed_hosts: tuple[str, ...] = ()  # extra Host names accepted, for a server reached by name
    limits: Limits = field(default_factory=Limits)
    config_dir: Path = field(default_factory=uprez_config_dir)
    idle: IdlePolicy = field(default_factory=IdlePolicy)  # unload / exit when idle, parent watch (server/idle.py)
    # A remote engine (docs/remote.md): named tokens, per-token jobs, HTTPS with cert_file/key_file or a
    # certificate made in config_dir; `insecure` serves it as plain HTTP (refused on a network address without it).
    remote: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    cluster: str | None = None  # a Ray address, or "auto" for a local Ray: jobs run on its workers (engine/cluster)
    cluster_workers: int | None = None  # workers to start there (default: one per GPU)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"port must be from 0 to 65535, got {self.port}")
        if self.queue_size < 0:
            raise InvalidInput(f"queue size must be 0 or more, got {self.queue_size}")
        if self.result_ttl <= 0:
            raise InvalidInput(f"result TTL must be more than 0 seconds, got {self.result_ttl}")

    @property
    def tls(self) -> bool:
        """Whether the engine serves HTTPS: a remote engine unless --insecure, or any engine given a certificate."""
        return self.cert_file is not None or (self.remote and not self.insecure)

    @classmethod
    def from_env(cls, **given: Any) -> ServerConfig:
        """A config from explicit values (None = not given), the environment, then the defaults."""
        values = {key: value for key, value in given.items() if value is not None}
        values.setdefault("limits", Limits.from_env())
        values.setdefault("config_dir", uprez_config_dir())
        dirs = tuple(values.pop("model_dirs", ()))
        values["model_dirs"] = (*dirs, *_env_model_dirs(), values["config_dir"] / "models")
        return cls(**values)


def write_engine_file(directory: Path, url: str, pid: int, **extra: Any) -> Path:
    """Tell clients where this server listens (they read `engine.json` when UPREZ_URL is not set).

    The pid and its start time let a client tell a live engine from one that crashed and left the file.
    """
    from engine import __version__
    from plugin.uprez_client.discovery import process_start_time

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / ENGINE_FILE
    fd, temp = tempfile.mkstemp(prefix=".engine-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "pid": pid, "started": process_start_time(pid), "version": __version__, **extra}, f)
    os.replace(temp, path)  # atomic: a client never reads half a file
    return path


def remove_engine_file(directory: Path, pid: int) -> None:
    """Remove `engine.json` if it still names this process (a newer server may have replaced it)."""
    path = directory / ENGINE_FILE
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
