"""Where the engine is and how to prove we may use it: the same config folder the engine writes to.

Mirrors platformdirs' `user_config_dir("uprez", appauthor=False, roaming=True)` with the standard library,
because editors bundle their own Python without platformdirs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Mapping

from .protocol import BRIDGE_FILE, DEFAULT_PORT, DEFAULT_URL, ENGINE_FILE, TOKEN_FILE, config_dir

__all__ = ["DEFAULT_PORT", "DEFAULT_URL", "config_dir", "engine_alive", "engine_url", "read_config_json", "read_token"]


def engine_url(environ: Mapping[str, str] | None = None) -> str:
    """$UPREZ_URL, else the URL a running engine wrote to engine.json, else the one the installer wrote to
    bridge.json (an engine not started yet, or one on a GPU server), else the default port on loopback."""
    environ = os.environ if environ is None else environ
    url = environ.get("UPREZ_URL", "").strip()
    if url:
        return url.rstrip("/")
    for name in (ENGINE_FILE, BRIDGE_FILE):
        data = read_config_json(name, environ)
        if name == ENGINE_FILE and not engine_alive(data):
            continue  # left by an engine that crashed: whatever listens at its URL now must not get our token
        url = data.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return url.rstrip("/")
    return DEFAULT_URL


def read_config_json(name: str, environ: Mapping[str, str] | None = None) -> dict:
    """A JSON object from the config folder (engine.json, bridge.json); {} when it is missing or unreadable."""
    try:
        with open(os.path.join(config_dir(environ=environ), name), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_token(environ: Mapping[str, str] | None = None) -> str | None:
    """$UPREZ_TOKEN (for an engine on another machine), else the token file the engine created, else None."""
    environ = os.environ if environ is None else environ
    token = environ.get("UPREZ_TOKEN", "").strip()
    if token:
        return token
    try:
        with open(os.path.join(config_dir(environ=environ), TOKEN_FILE), encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None


def process_start_time(pid: int) -> str | None:
    """When process `pid` started, as an opaque string (Linux: clock ticks after boot); None when unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        return fields[19]  # field 22 of proc(5), counted from field 3 after the name
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (it may be another program that reused the id)."""
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        try:
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def engine_alive(info: Mapping) -> bool:
    """Whether the engine an engine.json describes still runs: its pid is alive and, where the file recorded it,
    started when the engine did (so a reused pid does not count)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not process_alive(pid):
        return False
    started = info.get("started")
    return started is None or process_start_time(pid) in (None, started)
