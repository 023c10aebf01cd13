"""A real engine behind TLS on 127.0.0.1 for the front ends' remote-engine tests: the real app, served by uvicorn
with a certificate made here (cryptography), and the connection string a person would paste."""

from __future__ import annotations

import datetime
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from engine.server import ServerConfig
from engine.server.app import create_app
from plugin.uprez_client.connection import fingerprint_of, format_connection


def make_certificate(folder: Path, name: str = "127.0.0.1") -> tuple[Path, Path, str]:
    """A self-signed certificate and key for `name` in `folder`; returns (cert, key, SHA-256 fingerprint)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path, fingerprint_of(cert.public_bytes(serialization.Encoding.DER))


@dataclass
class TlsEngine:
    url: str
    token: str
    fingerprint: str
    server: uvicorn.Server
    thread: threading.Thread

    def connection_string(self, token: str | None = None, fingerprint: str | None = None) -> str:
        return format_connection(self.url, self.token if token is None else token, fingerprint or self.fingerprint)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_tls_engine(folder: Path, **config: object) -> TlsEngine:
    """The real app (built-in model unless `config` says otherwise) over HTTPS on 127.0.0.1, any free port."""
    cert, key, fingerprint = make_certificate(folder / "tls")
    values = {"host": "127.0.0.1", "port": 0, "model": "builtin", "device": "cpu", "config_dir": folder / "config"}
    values.update(config)
    app = create_app(ServerConfig(**values))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key),
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uprez-tls-engine", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the TLS engine stopped while starting")
        threading.Event().wait(0.02)
    token = (Path(values["config_dir"]) / "token").read_text().strip()
    return TlsEngine(f"https://127.0.0.1:{sock.getsockname()[1]}", token, fingerprint, server, thread)
