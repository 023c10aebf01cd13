"""Starting the server: in the foreground for `uprez serve`, or on a thread for tests and the desktop window."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

import uvicorn

from engine.errors import InvalidInput
from engine.server.app import create_app
from engine.server.config import ServerConfig, remove_engine_file, write_engine_file
from engine.server.protocol import protocol_options
from engine.server.security import WILDCARD_HOSTS, is_loopback
from engine.server.tls import Certificate, engine_certificate, given_certificate, host_names

GRACEFUL_SHUTDOWN_S = 3  # open event streams would otherwise hold a stopping server forever


def url_for(host: str, port: int, scheme: str = "http") -> str:
    """The URL a local client uses: a wildcard bind is reached through loopback."""
    if host in WILDCARD_HOSTS:
        host = "::1" if host == "::" else "127.0.0.1"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class PlainHttpRefused(InvalidInput):
    """Plain HTTP on an address other machines reach, without --insecure."""


def certificate_for(config: ServerConfig) -> Certificate | None:
    """The certificate the engine serves (None = plain HTTP); refuses plain HTTP off loopback without --insecure."""
    if not config.tls:
        if not is_loopback(config.host) and not config.insecure:
            raise PlainHttpRefused(
                f"refusing to serve plain HTTP on {config.host}: anyone on the network could read the token and the "
                "pictures. Use `uprez serve --remote` (HTTPS, see docs/remote.md), or add --insecure if a TLS proxy "
                "or a private link already protects this address")
        return None
    if config.cert_file is not None or config.key_file is not None:
        if config.cert_file is None or config.key_file is None:
            raise InvalidInput("--cert and --key go together: give the certificate and its private key (PEM)")
        return given_certificate(config.cert_file, config.key_file)
    return engine_certificate(config.config_dir, host_names(config.host, config.allowed_hosts))


def _red(text: str) -> str:
    return text if os.environ.get("NO_COLOR") else f"\033[1;31m{text}\033[0m"


def _announce(config: ServerConfig, url: str, certificate: Certificate | None) -> None:
    """What a non-loopback or remote engine should tell the person who started it, on stderr."""
    if certificate is not None:
        print(f"uprez: remote engine over HTTPS, certificate sha256 {certificate.fingerprint}; give someone access "
              "with `uprez tokens add NAME` (docs/remote.md)", file=sys.stderr)
    elif not is_loopback(config.host):
        print(_red(f"uprez: WARNING: plain HTTP on {config.host} (--insecure): the token and every picture cross the "
                   "network unencrypted; anyone on the way can read them and use the engine"), file=sys.stderr)


def _bind(config: ServerConfig) -> socket.socket:
    """Bind before starting uvicorn, so port 0 resolves to a real port we can publish."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted connections inherit it on Linux
    try:
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        raise
    # Listen now: a client that reads engine.json before uvicorn is up waits in the backlog, not refused.
    sock.listen(2048)
    return sock


def _uvicorn(app: Any, certificate: Certificate | None = None) -> uvicorn.Server:
    tls = {} if certificate is None else {"ssl_certfile": str(certificate.cert), "ssl_keyfile": str(certificate.key)}
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, **protocol_options(), **tls)
    return uvicorn.Server(config)


@dataclass
class RunningServer:
    """A server on a background thread; `stop()` shuts it down and waits."""

    url: str
    app: Any
    server: uvicorn.Server
    thread: threading.Thread
    fingerprint: str | None = None  # of the certificate, when it serves HTTPS

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(config: ServerConfig, **app_options: Any) -> RunningServer:
    """Run the engine on a daemon thread of this process (port 0 = any free port); returns once it listens."""
    certificate = certificate_for(config)
    sock = _bind(config)  # first: an engine that cannot have its port publishes nothing (token, engine.json)
    try:
        app = create_app(config, **app_options)
    except BaseException:
        sock.close()
        raise
    server = _uvicorn(app, certificate)
    app.state.idle.exit = partial(setattr, server, "should_exit", True)  # an idle exit is a graceful stop
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uprez-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the engine server stopped while starting; see the log above")
        threading.Event().wait(0.02)
    scheme = "http" if certificate is None else "https"
    return RunningServer(url_for(config.host, sock.getsockname()[1], scheme), app, server, thread,
                         None if certificate is None else certificate.fingerprint)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve(config: ServerConfig) -> None:
    """`uprez serve`: run in the foreground until Ctrl-C, publishing the URL in engine.json meanwhile."""
    certificate = certificate_for(config)  # plain HTTP off loopback is refused before anything listens
    sock = _bind(config)  # first: an engine that cannot have its port publishes nothing (token, engine.json)
    try:
        app = create_app(config)
    except BaseException:
        sock.close()
        raise
    url = url_for(config.host, sock.getsockname()[1], "http" if certificate is None else "https")
    _announce(config, url, certificate)
    pid = os.getpid()
    # A remote engine's file also says what `uprez tokens add` puts in connection strings: its certificate's
    # fingerprint (which a client on this machine pins too) and the port.
    extra = {} if not config.remote else {"remote": True, "port": sock.getsockname()[1], "host": config.host}
    if certificate is not None:
        extra["sha256"] = certificate.fingerprint
    write_engine_file(config.config_dir, url, pid, **extra)
    print(f"uprez engine {url} (token: {config.config_dir / 'token'}); Ctrl-C stops it", file=sys.stderr)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it found: make
    # SIGTERM's an exception too, so the finally below still removes engine.json.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server = _uvicorn(app, certificate)
    app.state.idle.exit = partial(setattr, server, "should_exit", True)  # idle exit: a graceful stop, as Ctrl-C
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # the re-raised Ctrl-C (or SIGTERM): for a server, a normal stop
    finally:
        signal.signal(signal.SIGTERM, previous)
        remove_engine_file(config.config_dir, pid)
    reason = app.state.idle.stop_reason
    print(f"uprez engine stopped{f' ({reason})' if reason else ''}", file=sys.stderr)
