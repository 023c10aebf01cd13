"""Named tokens for a remote engine: one per person or machine, stored as hashes, revocable while it runs.

`tokens.json` (mode 0600, in the config folder) holds each token's name, id, creation time and the SHA-256 of
its secret, never the secret itself: the secret is shown once, in the connection string `uprez tokens add`
prints. The secrets are 256 random bits, so a plain hash is as strong as a slow one. A revoked token stays
in the file, marked, so the engine can say "revoked" rather than "unknown". When it was last used lives in a
second file the engine alone writes (`tokens-used.json`), so the engine never rewrites the file the command
line edits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.server.security import UnsafeConfig, check_config_dir
from engine.server.tls import write_private

TOKENS_FILE = "tokens.json"
USED_FILE = "tokens-used.json"
LOCAL_OWNER = "local"  # the jobs of the local token (the file `token`): the engine's own user
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
USED_WRITE_S = 60.0  # "last used" is written at most this often per token: not a file write per request


@dataclass(frozen=True)
class NamedToken:
    """One entry of tokens.json (the secret's hash, never the secret)."""

    name: str
    id: str  # random, so a name revoked and given again is another owner whose jobs the old one cannot see
    sha256: str
    created: float
    revoked: float | None = None

    @property
    def owner(self) -> str:
        return f"token:{self.id}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(f"a token name is 1 to 64 letters, digits, '.', '_', '@' or '-' (starting with a letter or "
                           f"digit), got {name!r}")
    if name == LOCAL_OWNER:
        raise InvalidInput(f"{LOCAL_OWNER!r} is the engine's own token (the file 'token'); choose another name")
    return name


def _read_json(path: Path) -> Any:
    """The JSON in one of our private files; None when it does not exist. Refuses a file others may write."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if os.name != "nt" and (info.st_uid != os.geteuid() or info.st_mode & 0o022):
        raise UnsafeConfig(f"{path} belongs to someone else or others may write to it; anyone who can write it can "
                           f"let themselves in: delete it and add the tokens again")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsafeConfig(f"cannot read {path} ({exc}); fix or delete it (deleting revokes every named token)"
                           ) from None


def read_tokens(config_dir: Path) -> list[NamedToken]:
    data = _read_json(config_dir / TOKENS_FILE) or {}
    return [NamedToken(**entry) for entry in data.get("tokens", [])]


def _write_tokens(config_dir: Path, tokens: list[NamedToken]) -> None:
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_config_dir(config_dir)
    body = {"tokens": [vars(token) for token in tokens]}
    write_private(config_dir / TOKENS_FILE, (json.dumps(body, indent=1) + "\n").encode("utf-8"))


def add_token(config_dir: Path, name: str) -> str:
    """Make a token called `name` and return its secret (shown once; only its hash is kept)."""
    check_name(name)
    tokens = read_tokens(config_dir)
    if any(token.name == name and token.revoked is None for token in tokens):
        raise InvalidInput(f"there is already a token called {name!r}; revoke it first (`uprez tokens revoke {name}`)"
                           " or choose another name")
    secret = secrets.token_urlsafe(32)
    tokens = [token for token in tokens if token.name != name]  # a revoked one of that name is forgotten now
    tokens.append(NamedToken(name, secrets.token_hex(8), _hash(secret), time.time()))
    _write_tokens(config_dir, tokens)
    return secret


def revoke_token(config_dir: Path, name: str) -> NamedToken:
    """Mark the token `name` revoked; a running engine refuses it from its next request on."""
    tokens = read_tokens(config_dir)
    found = next((token for token in tokens if token.name == name and token.revoked is None), None)
    if found is None:
        known = ", ".join(token.name for token in tokens if token.revoked is None) or "none"
        raise InvalidInput(f"no token called {name!r} (tokens: {known})")
    revoked = NamedToken(found.name, found.id, found.sha256, found.created, time.time())
    _write_tokens(config_dir, [revoked if token is found else token for token in tokens])
    return revoked


def last_used(config_dir: Path) -> dict[str, float]:
    """Token id -> when the engine last let it in (written by the engine, at most once a minute per token)."""
    try:
        data = _read_json(config_dir / USED_FILE)
    except UnsafeConfig:
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


class TokenStore:
    """The named tokens a running engine accepts; re-reads tokens.json whenever it changed (one stat a request)."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_hash: dict[str, NamedToken] = {}
        self._used: dict[str, float] = last_used(config_dir)
        self._written: dict[str, float] = {}
        self._reload()

    def _reload(self) -> None:
        path = self.config_dir / TOKENS_FILE
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and self._stamp is not None:
            return
        tokens = read_tokens(self.config_dir) if stamp is not None else []
        self._by_hash = {token.sha256: token for token in tokens}
        self._stamp = stamp

    def lookup(self, secret: str) -> NamedToken | None:
        """The token whose secret this is (revoked or not), or None. The hash is the key: timing reveals nothing
        about a secret nobody knows."""
        with self._lock:
            self._reload()
            return self._by_hash.get(_hash(secret))

    def used(self, token: NamedToken) -> None:
        """Note that `token` was let in now; written to tokens-used.json at most once a minute per token."""
        now = time.time()
        with self._lock:
            self._used[token.id] = now
            if now - self._written.get(token.id, 0.0) < USED_WRITE_S:
                return
            self._written[token.id] = now
            used = dict(self._used)
        with contextlib.suppress(OSError):  # a full disk must not lock people out; "last used" is only a hint
            write_private(self.config_dir / USED_FILE, json.dumps(used).encode("utf-8"))
