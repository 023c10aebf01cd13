"""Where the engine is and how to prove we may use it: the same config folder the engine writes to.

Mirrors platformdirs' `user_config_dir("uprez", appauthor=False, roaming=True)` with the standard library,
because editors bundle their own Python without platformdirs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Mapping

DEFAULT_PORT = 8742
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def config_dir(platform: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """$UPREZ_CONFIG_DIR, else %APPDATA%\\uprez, ~/Library/Application Support/uprez or $XDG_CONFIG_HOME/uprez."""
    platform = platform or sys.platform
    environ = os.environ if environ is None else environ
    override = environ.get("UPREZ_CONFIG_DIR", "").strip()
    if override:
        return os.path.expanduser(override)
    if platform == "win32":
        base = environ.get("APPDATA", "").strip() or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
        return os.path.join(base, "uprez")
    if platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Application Support", "uprez")
    base = environ.get("XDG_CONFIG_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "uprez")


def engine_url(environ: Mapping[str, str] | None = None) -> str:
    """$UPREZ_URL, else the URL a running engine wrote to engine.json, else the one the installer wrote to
    bridge.json (an engine not started yet, or one on a GPU server), else the default port on loopback."""
    environ = os.environ if environ is None else environ
    url = environ.get("UPREZ_URL", "").strip()
    if url:
        return url.rstrip("/")
    for name in ("engine.json", "bridge.json"):
        url = read_config_json(name, environ).get("url")
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
        with open(os.path.join(config_dir(environ=environ), "token"), encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None
