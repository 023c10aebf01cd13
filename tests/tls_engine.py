"""A real remote engine for the front ends' "Connect to a remote engine…" tests: the server `uprez serve --remote`
runs (HTTPS with the certificate it makes itself, named tokens), on a thread of this process on 127.0.0.1, and
the connection strings `uprez tokens add` would print."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.server import ServerConfig, start_in_thread
from engine.server.run import RunningServer
from engine.server.tokens import add_token, revoke_token
from plugin.uprez_client.connection import format_connection


@dataclass
class TlsEngine:
    server: RunningServer
    config_dir: Path
    token: str  # the secret of the token named "artist"

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def fingerprint(self) -> str:
        return str(self.server.fingerprint)

    def connection_string(self, token: str | None = None, fingerprint: str | None = None) -> str:
        return format_connection(self.url, self.token if token is None else token, fingerprint or self.fingerprint)

    def revoked_string(self, name: str = "former") -> str:
        """The connection string of a token made and then revoked (`uprez tokens revoke NAME`)."""
        secret = add_token(self.config_dir, name)
        revoke_token(self.config_dir, name)
        return self.connection_string(token=secret)

    def stop(self) -> None:
        self.server.stop()


def start_tls_engine(folder: Path, **config: object) -> TlsEngine:
    """`uprez serve --remote --host 127.0.0.1 --port 0 --model builtin` on a thread, and a token named "artist"."""
    values = {"host": "127.0.0.1", "port": 0, "remote": True, "model": "builtin", "device": "cpu",
              "config_dir": folder / "config"}
    values.update(config)
    server = start_in_thread(ServerConfig(**values))
    config_dir = Path(values["config_dir"])
    return TlsEngine(server, config_dir, add_token(config_dir, "artist"))
