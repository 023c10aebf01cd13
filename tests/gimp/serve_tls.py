"""The remote engine of run-gimp.sh's "Connect to a remote engine…" check: `uprez serve --remote`'s server
(tests/tls_engine.py) on 127.0.0.1; writes a token's connection string, one with a wrong fingerprint and a
revoked token's to FOLDER/connection, wrong-pin and revoked, then serves until killed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tls_engine
from tls_engine import start_tls_engine  # noqa: E402

folder = Path(sys.argv[1])
engine = start_tls_engine(folder)
(folder / "wrong-pin").write_text(engine.connection_string(fingerprint="cd" * 32))
(folder / "revoked").write_text(engine.revoked_string())
(folder / "connection").write_text(engine.connection_string())  # last: the runner waits for this file
threading.Event().wait()
