"""Who may talk to the engine: the bearer token, the Host check against DNS rebinding, the upload cap."""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

TOKEN_FILE = "token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def load_or_create_token(directory: Path) -> str:
    """The server's token from `<directory>/token`, created (random, mode 0600) on first start."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / TOKEN_FILE
    try:
        # O_EXCL: two servers starting at once cannot both write a token; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="ascii", errors="replace").strip()
        if sys.platform != "win32" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)  # someone loosened it; the token is a password
        if len(token) >= 16:
            return token
        path.unlink()  # empty or truncated: start over rather than accept a guessable token
        return load_or_create_token(directory)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


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

    def __init__(self, bind_host: str, extra: tuple[str, ...] = ()) -> None:
        self.names = set(LOOPBACK_NAMES) | {name.lower().strip("[]") for name in extra}
        self.wildcard = bind_host in WILDCARD_HOSTS
        if not self.wildcard:
            self.names.add(bind_host.lower().strip("[]"))

    def allows(self, header: str | None) -> bool:
        name = _host_name(header or "")
        if name is None:
            return False
        return name in self.names or (self.wildcard and _is_ip_literal(name))


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
