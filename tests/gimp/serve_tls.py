"""The remote engine of run-gimp.sh's "Connect to a remote engine…" check: `uprez serve --remote`'s server
(tests/tls_engine.py) on 127.0.0.1; writes a token's connection string, one with a wrong fingerprint and a
revoked token's to FOLDER/connection, wrong-pin and revoked, then serves until killed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

# The checkout first (a script's own folder leads sys.path, and tests/engine would pass for the engine package),
# then tests/ for tls_engine.
sys.path[:0] = [str(Path(__file__).resolve().parents[2])]
sys.path.append(str(Path(__file__).resolve().parents[1]))
from tls_engine import start_tls_engine  # noqa: E402

folder = Path(sys.argv[1])
engine = start_tls_engine(folder)
(folder / "wrong-pin").write_text(engine.connection_string(fingerprint="cd" * 32))
(folder / "revoked").write_text(engine.revoked_string())
(folder / "connection").write_text(engine.connection_string())  # last: the runner waits for this file
threading.Event().wait()
