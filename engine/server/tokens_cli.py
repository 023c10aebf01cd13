"""`uprez tokens add|list|revoke NAME`: who may use a remote engine (docs/remote.md)."""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

from engine.server.config import uprez_config_dir
from engine.server.tls import engine_certificate, host_names, pem_fingerprint
from engine.server.tokens import add_token, last_used, read_tokens, revoke_token
from plugin.uprez_client.connection import format_connection
from plugin.uprez_client.discovery import engine_alive
from plugin.uprez_client.protocol import DEFAULT_PORT, ENGINE_FILE


def add_tokens_parser(commands: argparse._SubParsersAction) -> None:
    tokens = commands.add_parser("tokens", help="give people access to a remote engine, or take it back",
                                 description="Named tokens for `uprez serve --remote`: `add` prints a connection "
                                 "string once (paste it in Krita, GIMP or the window), `revoke` shuts it out at once.")
    actions = tokens.add_subparsers(dest="tokens_command", required=True)
    add = actions.add_parser("add", help="make a token and print its connection string (shown only this once)")
    add.add_argument("name", help="who or what it is for, e.g. anna or studio-pc-3")
    add.add_argument("--host", help="the name or address others reach this machine by (default: the engine's "
                                    "--host, else this machine's name)")
    add.add_argument("--port", type=int, help=f"the engine's port (default: the running engine's, else {DEFAULT_PORT})")
    add.add_argument("--cert", type=Path, metavar="PEM", help="the certificate given to `uprez serve --cert` "
                     "(default: the running engine's, else the one the engine makes in its config folder)")
    actions.add_parser("list", help="the tokens: name, when made, when last used (never the secrets)")
    revoke = actions.add_parser("revoke", help="shut a token out; a running engine refuses it from now on")
    revoke.add_argument("name")


def _engine_info(config_dir: Path) -> dict:
    """The running remote engine's engine.json ({} when none runs, or it is a local one)."""
    import json

    try:
        info = json.loads((config_dir / ENGINE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) and info.get("remote") and engine_alive(info) else {}


def _public_host(info: dict) -> str:
    host = str(info.get("host") or "")
    if host and host not in ("0.0.0.0", "::"):
        return host.strip("[]")
    return socket.getfqdn() or socket.gethostname()


def connection_for(config_dir: Path, secret: str, host: str | None = None, port: int | None = None,
                   cert: Path | None = None) -> str:
    """The connection string for `secret`: the engine's public address and its certificate's fingerprint."""
    info = _engine_info(config_dir)
    host = host or _public_host(info)
    port = port or int(info.get("port") or DEFAULT_PORT)
    if cert is not None:
        fingerprint = pem_fingerprint(cert.read_bytes())
    elif info.get("sha256"):
        fingerprint = str(info["sha256"])
    else:  # no engine runs yet: the certificate it will make (and keep) is made now
        fingerprint = engine_certificate(config_dir, host_names(host)).fingerprint
    bracketed = f"[{host}]" if ":" in host else host
    return format_connection(f"https://{bracketed}:{port}", secret, fingerprint)


def _when(stamp: float | None) -> str:
    return "never" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def run_tokens(args: argparse.Namespace) -> int:
    config_dir = uprez_config_dir()
    if args.tokens_command == "add":
        if args.cert is not None and not args.cert.is_file():
            print(f"uprez: {args.cert} is not a file; give the certificate `uprez serve --cert` serves",
                  file=sys.stderr)
            return 2
        secret = add_token(config_dir, args.name)
        line = connection_for(config_dir, secret, args.host, args.port, args.cert)
        print(line)
        print(f"uprez: token {args.name!r} made. Give the line above to {args.name} privately (it is the key); it is "
              f"not shown again. Take access back with `uprez tokens revoke {args.name}`.", file=sys.stderr)
        return 0
    if args.tokens_command == "list":
        tokens = read_tokens(config_dir)
        if not tokens:
            print("no named tokens; make one with `uprez tokens add NAME`", file=sys.stderr)
            return 0
        used = last_used(config_dir)
        print(f"{'NAME':<24} {'CREATED':<17} {'LAST USED':<17} STATE")
        for token in tokens:
            state = "active" if token.revoked is None else f"revoked {_when(token.revoked)}"
            print(f"{token.name:<24} {_when(token.created):<17} {_when(used.get(token.id)):<17} {state}")
        return 0
    revoked = revoke_token(config_dir, args.name)
    print(f"uprez: token {revoked.name!r} revoked; a running engine refuses it from its next request", file=sys.stderr)
    return 0
