"""A real engine behind TLS (tests/tls_engine.py) for run-gimp.sh's remote-engine check: writes the connection
string, and one with a wrong fingerprint, to FOLDER/connection and FOLDER/wrong-pin, then serves until killed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tls_engine
from tls_engine import start_tls_engine  # noqa: E402

folder = Path(sys.argv[1])
engine = start_tls_engine(folder)
(folder / "wrong-pin").write_text(engine.connection_string(fingerprint="cd" * 32))
(folder / "connection").write_text(engine.connection_string())  # last: the runner waits for this file
threading.Event().wait()
