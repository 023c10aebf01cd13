"""A transformer-only checkpoint with no --base uses the family's base from the local cache only (issue 16 item 6).

The Hub endpoint is pointed at a local recorder: any download attempt shows up there, with no network needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.backends.registry import family_for_keys


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if "/resolve/" in self.path or "/api/models/" in self.path:  # file downloads and repo look-ups only
            self.seen.append(self.path)
        self.send_error(404)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def _upscale(checkpoint, sample_png, out, hub_url, cache):
    env = {**os.environ, "HF_ENDPOINT": hub_url, "HF_HOME": str(cache.parent), "HF_HUB_CACHE": str(cache)}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "engine.cli", "upscale", str(sample_png), "-o", str(out),
                           "--model", str(checkpoint), "-q"], capture_output=True, text=True, env=env, timeout=300)


def _default_base(checkpoint) -> str:
    from safetensors import safe_open

    from engine.backends.loader import GUIDANCE_KEY_MARKERS

    with safe_open(str(checkpoint), framework="pt") as f:
        keys = list(f.keys())
    family = family_for_keys(keys, str(checkpoint))
    guided = any(marker in key for key in keys for marker in GUIDANCE_KEY_MARKERS)
    return family.default_base_guided if guided and family.default_base_guided else family.default_base


def test_a_missing_base_is_named_with_how_to_pull_it_and_nothing_is_downloaded(tiny_model, sample_png, tmp_path,
                                                                                hub):
    from engine.testing.tiny_models import save_single_file_transformer

    hub_url, seen = hub
    checkpoint = save_single_file_transformer(tiny_model("flux-dev"), tmp_path / "transformer.safetensors")
    base = _default_base(checkpoint)
    done = _upscale(checkpoint, sample_png, tmp_path / "out.png", hub_url, tmp_path / "hf" / "hub")
    assert done.returncode == 1, done.stderr
    assert "VAE and text encoders" in done.stderr and f"uprez models pull {base}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.png").exists()
    assert seen == [], f"the engine tried to download: {seen[:5]}"


def test_a_cached_base_is_used_offline(tiny_model, sample_png, tmp_path, hub):
    from engine.testing.tiny_models import save_single_file_transformer

    hub_url, seen = hub
    folder = tiny_model("flux-dev")
    checkpoint = save_single_file_transformer(folder, tmp_path / "transformer.safetensors")
    cache = tmp_path / "hf" / "hub"
    repo = cache / f"models--{_default_base(checkpoint).replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    done = _upscale(checkpoint, sample_png, tmp_path / "out.png", hub_url, cache)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.png").exists() and seen == [], seen[:5]
