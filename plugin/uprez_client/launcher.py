"""Starting the engine for a bridge, when the user's set-up says how (the installer writes it).

`<config folder>/bridge.json` may hold {"start_command": ["/path/to/python", "-m", "engine.cli", "serve"]}.
Without it, a bridge only says how to start the engine by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Callable

from .client import Client
from .discovery import read_config_json
from .errors import EngineNotRunning, UprezClientError
from .idle import is_stopping, wait_until_gone

SETTINGS_FILE = "bridge.json"
START_TIMEOUT_S = 120.0  # loading a big model can take a while; the built-in one starts in seconds


def bridge_settings() -> dict[str, Any]:
    return read_config_json(SETTINGS_FILE)


def start_command() -> list[str] | None:
    command = bridge_settings().get("start_command")
    if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        return command
    return None


def connect(client: Any = None, on_starting: Callable[[], None] | None = None) -> Any:
    """A client whose engine answers: `client` (default: found by discovery) if its engine is up, else one
    for the engine started here as bridge.json says. Without a start command, the client's own
    EngineNotRunning (which says how to start it by hand) goes to the caller."""
    client = client or Client()
    try:
        client.health()
        return client
    except EngineNotRunning:
        # A remote engine (a connection string's) is never replaced by a local one started here.
        if start_command() is None or getattr(client, "connection", None) is not None:
            raise
    except UprezClientError as exc:  # 503: an idle engine is stopping right now; start the next one after it
        if not is_stopping(exc):
            raise
        wait_until_gone(client)
        if start_command() is None:
            raise EngineNotRunning(f"{exc.message}; start it with `uprez serve`") from None
    if on_starting is not None:
        on_starting()
    return start_engine(client)


def start_engine(client: Any, timeout: float = START_TIMEOUT_S) -> Any:
    """Start the configured engine and wait until it answers; returns a client for it.

    The engine may come up on another port than `client` expected (`--port 0`), so each try finds it
    afresh (engine.json). Raises EngineNotRunning with what to do when it does not come up.
    """
    command = start_command()
    if command is None:
        raise EngineNotRunning(f"no Uprez engine answers at {client.url}; start it with `uprez serve` "
                               f"(or run the installer, which sets up {SETTINGS_FILE} so the editors start it)")
    flags: dict[str, Any] = {}
    if sys.platform == "win32":
        flags["creationflags"] = getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    else:
        flags["start_new_session"] = True  # the engine outlives the editor's plug-in process
    # Started on demand: the engine exits by itself after a long idle time (engine/server/idle.py).
    env = dict(os.environ, UPREZ_STARTED_BY="bridge")
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env, **flags)
    except OSError as exc:
        raise EngineNotRunning(f"could not start the engine with {' '.join(command)} ({exc}); "
                               f"fix start_command in {SETTINGS_FILE}, or start it with `uprez serve`") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineNotRunning(f"the engine started with {' '.join(command)} exited with code "
                                   f"{process.returncode}; run `uprez serve` in a terminal to see why")
        # Fresh clients: `client` may have looked for the token before this first start created it.
        for candidate in (Client(client.url, timeout=client.timeout), _discovered(client)):
            try:
                candidate.health()
                return candidate
            except (EngineNotRunning, ValueError):
                pass
        time.sleep(0.5)
    raise EngineNotRunning(f"the engine started with {' '.join(command)} did not answer within {timeout:.0f} s")


def _discovered(client: Any) -> Any:
    """A client for wherever discovery finds the engine now."""
    return Client(timeout=client.timeout)  # a first start writes the token file too: read it afresh
