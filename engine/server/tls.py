"""The remote engine's TLS certificate: the user's own, or one made at first start and kept beside the token.

A self-made certificate is trusted by its SHA-256 fingerprint (the connection string carries it), not by an
authority, so its names only need to be plausible; what must not change is the key, so it is made once and
reused on every later start.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput
from engine.server.security import check_config_dir
from plugin.uprez_client.connection import fingerprint_of

CERT_FILE = "cert.pem"  # in the config folder, beside the token
KEY_FILE = "key.pem"
VALID_DAYS = 3650  # pinned by fingerprint: an expiry would only force every artist to paste a new string


@dataclass(frozen=True)
class Certificate:
    """The certificate and key files uvicorn serves, and the fingerprint clients pin."""

    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the certificate's DER bytes, 64 lower-case hex digits


def host_names(bind_host: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Names and addresses a self-made certificate lists: this machine's, the bound address, the given ones."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn(), *extra]
    if bind_host not in ("0.0.0.0", "::", ""):
        names.append(bind_host.strip("[]"))
    seen: list[str] = []
    for name in names:
        if name and name not in seen:
            seen.append(name)
    return seen


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 in one step (a private temporary file renamed into place)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def make_certificate(names: list[str]) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its private key (PEM, unencrypted) for `names` (SAN: DNS and IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # P-256: every TLS client has it, and it is made at once
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Uprez engine")])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a client whose clock is a little behind
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def pem_fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file: what a client sees in the handshake."""
    text = cert_pem.decode("ascii", errors="replace")
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise InvalidInput("the certificate file holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return fingerprint_of(ssl.PEM_cert_to_DER_cert(text[start:end + len("-----END CERTIFICATE-----")]))


def given_certificate(cert: Path, key: Path) -> Certificate:
    """The user's own certificate and key (`--cert`, `--key`), checked to be a pair before the server starts."""
    for path in (cert, key):
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file; give the certificate and private key as PEM files")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise InvalidInput(f"{cert} and {key} are not a certificate and its private key ({exc.reason or exc}); "
                           "give both as PEM files, the key unencrypted") from None
    return Certificate(cert, key, pem_fingerprint(cert.read_bytes()))


def engine_certificate(config_dir: Path, names: list[str]) -> Certificate:
    """The engine's own certificate in the config folder, made (mode 0600) at first start and reused after."""
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_config_dir(config_dir)
    cert, key = config_dir / CERT_FILE, config_dir / KEY_FILE
    if not (cert.is_file() and key.is_file()):
        cert_pem, key_pem = make_certificate(names)
        write_private(key, key_pem)  # the key first: a certificate without its key would be useless
        write_private(cert, cert_pem)
    if key.stat().st_mode & 0o077:
        raise InvalidInput(f"the engine's private key {key} can be read by others; delete {key} and {cert} so the "
                           "engine makes a new pair (then give everyone a new connection string)")
    return given_certificate(cert, key)
