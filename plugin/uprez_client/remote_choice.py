"""Which engine a front end uses: the local one (found and started as before), or a remote one the person
connected to with a connection string ("Connect to a remote engine…" in Krita, GIMP and the window).

The choice is one file per front end in the config folder, `remote-<app>` (app: krita, gimp, window), holding
the connection string itself, token included, with mode 0600: not in kritarc or GIMP's plain settings, which
other programs read. No file: the local engine. While a remote is chosen the front end never starts a local
engine, and engine.json / bridge.json / $UPREZ_URL are not consulted: the person's explicit choice wins.

Standard library only (Python 3.8): the bridges run in the editors' own Python.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import tempfile
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .connection import Connection, PinMismatch, PinnedHTTPSConnection, format_connection, parse
from .errors import EngineNotRunning
from .protocol import config_dir

APPS = ("krita", "gimp", "window")
CHECK_TIMEOUT_S = 10.0  # a remote engine on a slow Wi-Fi answers its health call well within this
LOCAL_LABEL = "local"


class RemoteProblem(Exception):
    """Why a connection string cannot be used, in one sentence a person can act on."""


# -- where the choice lives ------------------------------------------------------------------------------------
def choice_path(app: str, environ: Mapping[str, str] | None = None) -> str:
    if app not in APPS:
        raise ValueError(f"app must be one of {', '.join(APPS)}, got {app!r}")
    return os.path.join(config_dir(environ=environ), f"remote-{app}")


def load(app: str, environ: Mapping[str, str] | None = None) -> Connection | None:
    """The remote engine `app` was connected to, or None for the local engine (also for an unreadable file)."""
    try:
        with open(choice_path(app, environ), encoding="utf-8") as f:
            return parse(f.read())
    except (OSError, ValueError):
        return None


def save(app: str, connection: Connection, environ: Mapping[str, str] | None = None) -> str:
    """Store the choice (written whole, mode 0600 from its first byte); returns the file's path."""
    path = choice_path(app, environ)
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    text = format_connection(connection.url, connection.token, connection.fingerprint) + "\n"
    fd, temp = tempfile.mkstemp(prefix=f".remote-{app}-", dir=folder)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    return path


def forget(app: str, environ: Mapping[str, str] | None = None) -> None:
    """Back to the local engine."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(choice_path(app, environ))


def host_of(connection: Connection) -> str:
    """HOST, or HOST:PORT when the port is not HTTPS's own."""
    parts = urlsplit(connection.url)
    host = parts.hostname or connection.url
    return f"{host}:{parts.port}" if parts.port and parts.port != 443 else host


def label(connection: Connection | None) -> str:
    """What a front end shows where the engine's status is: "remote: HOST" or "local"."""
    return LOCAL_LABEL if connection is None else f"remote: {host_of(connection)}"


# -- checking a connection string -------------------------------------------------------------------------------
def check(text: str, timeout: float = CHECK_TIMEOUT_S) -> tuple[Connection, dict[str, Any]]:
    """Parse `text` and ask the engine, over the pinned TLS connection, for its health and (with the token) its
    queue; returns the connection and the health answer, or raises RemoteProblem with one sentence."""
    try:
        connection = parse(text)
    except ValueError as exc:
        raise RemoteProblem(f"{exc}.") from None
    return connection, probe(connection, timeout)


def probe(connection: Connection, timeout: float = CHECK_TIMEOUT_S) -> dict[str, Any]:
    """GET /v1/health, then GET /v1/jobs with the token, on one pinned connection. The client folds every
    network failure into EngineNotRunning; a person connecting needs to know which one it was."""
    parts = urlsplit(connection.url)
    where = host_of(connection)
    conn = PinnedHTTPSConnection(parts.hostname or "", parts.port or 443, connection.fingerprint, timeout)
    try:
        health = _get_json(conn, "/v1/health", {})
        _get_json(conn, "/v1/jobs", {"Authorization": "Bearer " + connection.token})
    except PinMismatch:
        raise RemoteProblem(f"The engine at {where} showed a certificate other than the one in the connection "
                            "string: someone may be in between, or the engine made a new certificate; ask for a "
                            "new connection string.") from None
    except _Refused as exc:
        if exc.status == 401:
            raise RemoteProblem(f"The engine at {where} does not accept this token (it was revoked, or belongs to "
                                "another engine); ask its owner for a new connection string "
                                "(`uprez tokens add NAME`).") from None
        raise RemoteProblem(f"The engine at {where} refused the connection check ({exc}); ask its owner to look "
                            "at its log.") from None
    except socket.timeout:
        raise RemoteProblem(f"The engine at {where} did not answer within {timeout:.0f} s; check that it is "
                            "running and that this network reaches it, then try again.") from None
    except socket.gaierror:
        raise RemoteProblem(f"The host name {parts.hostname} could not be found; check the connection string "
                            "and this machine's network (VPN, DNS).") from None
    except ssl.SSLError as exc:
        raise RemoteProblem(f"No TLS connection could be made with {where} ({exc.reason or exc}); the engine "
                            "there must run with `uprez serve --remote`.") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise RemoteProblem(f"Cannot reach an engine at {where} ({reason}); check that it runs with `uprez serve "
                            "--remote` and that this network reaches it, then try again.") from None
    finally:
        conn.close()
    if not isinstance(health, dict) or "version" not in health:
        raise RemoteProblem(f"What answers at {where} is not an Uprez engine; check the connection string.")
    return health


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status


def _get_json(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> Any:
    conn.request("GET", path, headers=dict(headers, Accept="application/json", **{"User-Agent": "uprez-client"}))
    response = conn.getresponse()
    data = response.read()
    try:
        body = json.loads(data.decode("utf-8"))
    except ValueError:
        body = None
    if response.status >= 400:
        message = body.get("error", "") if isinstance(body, dict) else data[:200].decode("utf-8", "replace")
        raise _Refused(response.status, str(message))
    return body


# -- the client a front end uses -----------------------------------------------------------------------------------
def client_for(app: str, timeout: float = 30.0, environ: Mapping[str, str] | None = None) -> Any:
    """A Client for `app`'s chosen engine: the remote one, pinned, or the local one found as before."""
    from .client import Client

    connection = load(app, environ)
    if connection is None:
        return Client(timeout=timeout)
    client = Client(connection, timeout=timeout)  # pinned HTTPS: a wrong certificate gets no token
    client.connection = connection  # the choice it came from: launcher.connect never replaces such an engine
    return client


def is_remote(client: Any) -> bool:
    """Whether `client` talks to a chosen remote engine (client_for made it from a connection string)."""
    return getattr(client, "connection", None) is not None


def connect(app: str, on_starting: Callable[[], None] | None = None, client: Any = None) -> Any:
    """A client whose engine answers. The remote engine when one is chosen: asked, never started (its failure
    says so). Otherwise the local engine, started as bridge.json says when it is not running (launcher)."""
    from . import launcher

    client = client or client_for(app)
    if is_remote(client):
        try:
            client.health()
        except EngineNotRunning as exc:  # nothing local is started in its place, and `uprez serve` here is no help
            raise EngineNotRunning(f"the remote engine at {host_of(client.connection)} did not answer ({exc.message}); "
                                   "check that it runs and this network reaches it, or go back to the local engine "
                                   "in the Uprez dialog") from None
        return client
    return launcher.connect(client, on_starting)
