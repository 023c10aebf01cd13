"""A remote engine's connection string, and the pinned TLS it asks for.

`uprez tokens add NAME` prints one line that carries everything a client needs:

    uprez://TOKEN@HOST:PORT/?sha256=FINGERPRINT

The fingerprint is the SHA-256 of the engine's certificate (DER). Pinning it replaces a certificate
authority: an engine's self-made certificate is trusted exactly, and anyone in between with another
certificate is refused before a byte of the token or the pixels leaves. Standard library only (Python 3.8).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import ssl
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

SCHEME = "uprez"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Connection(NamedTuple):
    """What a client needs to reach one remote engine."""

    url: str  # https://HOST:PORT
    token: str
    fingerprint: str  # SHA-256 of the certificate's DER bytes, 64 lower-case hex digits


def normalise_fingerprint(text: str) -> str:
    """'AB:CD:…' or 'abcd…' (64 hex digits, colons optional) -> 'abcd…'; ValueError otherwise."""
    hexed = text.strip().replace(":", "").lower()
    if not _HEX64.match(hexed):
        raise ValueError("the certificate fingerprint must be 64 hexadecimal digits (SHA-256)")
    return hexed


def fingerprint_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def format_connection(url: str, token: str, fingerprint: str) -> str:
    """The one line `uprez tokens add` shows; `parse` reads it back."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"a remote engine is reached over https, not {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{SCHEME}://{quote(token, safe='')}@{host}{port}/?sha256={normalise_fingerprint(fingerprint)}"


def parse(text: str) -> Connection:
    """Read a connection string; a ValueError says what is wrong with it in words a person can act on."""
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme != SCHEME:
        raise ValueError("a connection string starts with uprez:// (copy the whole line `uprez tokens add` printed)")
    if not parts.username:
        raise ValueError("this connection string has no token (the part before @)")
    if not parts.hostname:
        raise ValueError("this connection string has no host (the part after @)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("this connection string's port is not a number from 1 to 65535") from None
    pins = parse_qs(parts.query).get("sha256")
    if not pins:
        raise ValueError("this connection string has no certificate fingerprint (sha256=…); it cannot be trusted")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"https://{host}" + (f":{port}" if port else "")
    return Connection(url, unquote(parts.username), normalise_fingerprint(pins[0]))


class PinMismatch(ssl.SSLError):
    """The engine showed a certificate other than the pinned one."""


def pinned_context() -> ssl.SSLContext:
    """A TLS client context that checks no authority: the caller checks the pinned fingerprint instead."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def check_pin(sock: ssl.SSLSocket, fingerprint: str) -> None:
    der = sock.getpeercert(binary_form=True) or b""
    seen = fingerprint_of(der)
    if not hmac.compare_digest(seen, normalise_fingerprint(fingerprint)):
        raise PinMismatch(f"the engine's certificate is not the one in the connection string (it shows "
                          f"sha256 {seen[:16]}…): someone may be in between, or the engine made a new "
                          "certificate; ask for a new connection string")


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that sends nothing before the certificate matched `fingerprint`."""

    def __init__(self, host: str, port: int | None, fingerprint: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=pinned_context())
        self._fingerprint = normalise_fingerprint(fingerprint)

    def connect(self) -> None:
        super().connect()
        try:
            check_pin(self.sock, self._fingerprint)
        except PinMismatch:
            self.sock.close()
            self.sock = None
            raise
