"""The bridges' client, run by a real Python 3.8 (the oldest Python a Krita build bundles) against the server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from needs import PY38_REASON, needs, python38
from server_helpers import raw_image

PLUGIN = Path(__file__).resolve().parents[2] / "plugin"
PY38 = python38()

SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from uprez_client import Client, RejectedInput
client = Client(sys.argv[2])
pixels = open(sys.argv[3], "rb").read()
events = []
job = client.submit_raw(pixels, 16, 16, channel_order="BGRA", depth=8, scale=2, strength=0.3, steps=8)
final = client.events(job, events.append)
data, meta = client.result(job)
handle = client.start(pixels, 16, 16, "BGRA", 8, scale=2, strength=0.3, steps=8)
typed = [type(e).__name__ + ":" + e.kind for e in handle.events()]
same = handle.result()[0] == data
try:
    client.submit_raw(b"short", 16, 16)
    rejected = ""
except RejectedInput as exc:
    rejected = str(exc)
print(json.dumps({"version": list(sys.version_info[:2]), "final": final["event"], "bytes": len(data),
                  "meta": meta, "kinds": sorted({e["event"] for e in events}), "rejected": rejected,
                  "typed": typed, "same": same}))
"""


@needs(PY38, "python3.8", PY38_REASON)
def test_client_runs_on_python_3_8_against_the_real_server(server, config_dir, tmp_path):
    pixels = tmp_path / "pixels.raw"
    pixels.write_bytes(raw_image(16, 16))
    env = {**os.environ, "UPREZ_CONFIG_DIR": str(config_dir), "PYENV_VERSION": "3.8.18:system"}
    env.pop("PYTHONPATH", None)  # the editor's Python has nothing of ours but the plug-in folder
    done = subprocess.run([PY38, "-I", "-c", SCRIPT, str(PLUGIN), server.url, str(pixels)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["version"] == [3, 8]
    assert report["final"] == "done" and report["bytes"] == 32 * 32 * 4
    assert {"progress", "done"} <= set(report["kinds"])
    assert "buffer" in report["rejected"] or "bytes" in report["rejected"]
    # Client.start's RemoteJob and its frozen JobEvent dataclasses work on 3.8 too
    assert report["typed"][0] == "JobEvent:submitted" and report["typed"][-1] == "JobEvent:done" and report["same"]
