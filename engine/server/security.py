"""Who may talk to the engine: the bearer token, the Host check against DNS rebinding, the upload cap."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine.errors import UprezError
from plugin.uprez_client.protocol import TOKEN_FILE

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


class UnsafeConfig(UprezError):
    """The config folder or token file could be read or replaced by someone else; refused, with the fix."""


def check_config_dir(directory: Path) -> None:
    """Refuse a config folder that is not ours or that others may write to (they could swap the token)."""
    if sys.platform == "win32":
        return  # ACLs, not mode bits; the per-user %APPDATA% is private by default
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeConfig(f"the engine's config folder {directory} is not a folder; remove it or set "
                           "UPREZ_CONFIG_DIR to another place")
    if info.st_uid != os.geteuid():
        raise UnsafeConfig(f"the engine's config folder {directory} belongs to user id {info.st_uid}, not to you; "
                           "set UPREZ_CONFIG_DIR to a folder of your own")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeConfig(f"the engine's config folder {directory} can be written by others (mode "
                           f"{stat.S_IMODE(info.st_mode):o}); run `chmod 700 {directory}`")


def _read_token_file(path: Path) -> str:
    """The token in `path`, opened without following a link and only if it is our own private regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block us
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeConfig(f"the token file {path} is a symbolic link; delete it so the engine makes a new one"
                               ) from None
        raise UnsafeConfig(f"cannot read the token file {path} ({exc.strerror or exc}); delete it so the engine "
                           "makes a new one") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeConfig(f"the token file {path} is not a regular file; delete it so the engine makes a new one")
    with os.fdopen(fd, "rb") as f:
        if sys.platform != "win32":
            if info.st_uid != os.geteuid():
                raise UnsafeConfig(f"the token file {path} belongs to user id {info.st_uid}, not to you; delete it "
                                   "so the engine makes a new one")
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UnsafeConfig(f"the token file {path} can be read by others (mode "
                                   f"{stat.S_IMODE(info.st_mode):o}); delete it so the engine makes a new one (the "
                                   "old token may have leaked), or run `chmod 600` on it if you know it has not")
        return f.read(4096).decode("ascii", errors="replace").strip()


def load_or_create_token(directory: Path) -> str:
    """The server's token from `<directory>/token`, created (random, mode 0600) on first start.

    Creation is atomic: the token is written to a private temporary file and linked into place, so two
    engines starting at once agree on one token and no one ever reads a half-written file.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_config_dir(directory)
    path = directory / TOKEN_FILE
    for _ in range(3):
        if os.path.lexists(path):
            token = _read_token_file(path)
            if len(token) >= 16:
                return token
            # Empty or truncated (only a crash of another tool could leave this): start over, atomically.
            _publish(directory, path, secrets.token_urlsafe(32), replace=True)
            continue
        token = secrets.token_urlsafe(32)
        if _publish(directory, path, token, replace=False):
            return token
        # Another engine linked its token first: read and use that one.
    return _read_token_file(path)


def _publish(directory: Path, path: Path, token: str, *, replace: bool) -> bool:
    """Put `token` at `path` in one step; False when `replace` is off and another file got there first."""
    fd, temp = tempfile.mkstemp(prefix=".token-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # fails if the name exists: the first engine's token wins
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: an exclusive rename is the next best thing
            if os.path.lexists(path):
                return False
            os.rename(temp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def token_matches(authorization: str | None, token: str) -> bool:
    """True when the header is `Bearer <token>`; compared in constant time so timing leaks nothing."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _host_name(header: str) -> str | None:
    """The name part of a Host header (`[::1]:8742` -> `::1`), or None when it is not well formed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return name or None


class HostPolicy:
    """Which Host headers are accepted: loopback names always, plus the bound host and any named extras.

    A DNS-rebinding page reaches 127.0.0.1 under the attacker's own name, so only names are checked,
    not ports (a TLS proxy in front may use another port). On a wildcard bind (0.0.0.0) an IP-literal
    Host is also accepted: a rebinding attack needs a name, and remote clients often use the IP.
    """

    def __init__(self, bind_host: str, extra: tuple[str, ...] = (), any_name: bool = False) -> None:
        self.names = set(LOOPBACK_NAMES) | {name.lower().strip("[]") for name in extra}
        self.wildcard = bind_host in WILDCARD_HOSTS
        # Over TLS a rebinding page gets nowhere: the browser refuses the engine's certificate for its name.
        self.any_name = any_name
        if not self.wildcard:
            self.names.add(bind_host.lower().strip("[]"))

    def allows(self, header: str | None) -> bool:
        name = _host_name(header or "")
        if name is None:
            return False
        return self.any_name or name in self.names or (self.wildcard and _is_ip_literal(name))


class BodyTooLarge(Exception):
    """The request body passed the upload limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than the engine's limit of {limit // 2**20} MiB; send a smaller "
                         "image or region, or start the engine with a larger --max-upload-mb")
        self.limit = limit


class Guard:
    """ASGI middleware run before routing: refuse foreign Host headers (421) and oversized bodies (413)."""

    def __init__(self, app: Any, policy: HostPolicy, max_body: int) -> None:
        self.app = app
        self.policy = policy
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.policy.allows(host):
            await _reply(send, 421, f"Host {host!r} is not accepted by this engine (DNS rebinding protection); "
                                    "use http://127.0.0.1, or start it with --allow-host NAME")
            return
        length = headers.get(b"content-length", b"0").decode("latin-1")
        if length.isdigit() and int(length) > self.max_body:
            await _reply(send, 413, str(BodyTooLarge(self.max_body)))
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Any) -> Any:
        """Wrap `receive` so a chunked body that grows past the limit fails while it is read."""
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge(self.max_body)
            return message

        return counted


async def _reply(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
