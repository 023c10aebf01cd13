"""Shared fixtures: tiny random models of every family, built once per session and saved as real folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from needs import check_marks
from PIL import Image

from engine.server import ServerConfig, start_in_thread
from plugin.uprez_client import Client

# The built-in network's bf16 convolutions run only where the CPU has them (engine/builtin/cpu.py): the suite's
# expected outputs (tests/golden above all) stay one thing on every machine; tests/test_builtin_cpu.py covers bf16.
os.environ.setdefault("UPREZ_CPU_BF16", "0")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "uprez_needs(available, what, reason): skip, or fail under CI=true")


def pytest_runtest_setup(item) -> None:
    check_marks(item)  # a missing Krita, chroot or data package: skip here, fail under CI=true


# The tests that run an editor in a Debian chroot, in the order .ci/run builds the chroots in the background
# (trixie and sid, then experimental). They run last, so that on CI the builds have the whole Python suite's time
# to finish instead of the suite waiting on their locks half-way through.
CHROOT_TESTS = ("gimp/test_gimp_in_chroots.py", "krita/test_krita_bridge.py", "krita/test_krita_gui.py")


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by module-scoped fixtures, which this keeps
def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i + 1 for i, tail in enumerate(CHROOT_TESTS) if path.endswith(tail)), 0)

    items.sort(key=rank)  # stable: the order within each group stays as collected


# Tiny models gain nothing from threads, and on a busy 2-core machine threads that wait on each other
# made the suite ten times slower.
torch.set_num_threads(1)

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "data" / "sample.jpg"


@pytest.fixture(scope="session", autouse=True)
def prompt_cache_dir(tmp_path_factory) -> Path:
    """UPREZ_CACHE_DIR for the session (and the engines and CLIs it starts): encoded prompts stay in the test."""
    folder = tmp_path_factory.mktemp("uprez-cache")
    previous = os.environ.get("UPREZ_CACHE_DIR")
    os.environ["UPREZ_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("UPREZ_CACHE_DIR", None)
    else:
        os.environ["UPREZ_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """`tiny_model("flux-dev") -> Path` of a saved diffusers folder with random weights, cached per session."""
    from engine.testing.tiny_models import save_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = save_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_backend(tiny_model):
    """`tiny_backend("flux-dev")`: the saved model loaded through the user's loader, on the CPU."""
    from engine.backends.loader import load_backend

    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_backend(tiny_model(family), device="cpu")
        return loaded[family]

    return get


@pytest.fixture
def sample_image() -> Image.Image:
    """The bundled sample photo, shrunk so tiny-model runs stay fast."""
    with Image.open(SAMPLE) as image:
        return image.convert("RGB").resize((64, 75), Image.Resampling.LANCZOS)


@pytest.fixture
def sample_png(tmp_path, sample_image) -> Path:
    path = tmp_path / "sample.png"
    sample_image.save(path)
    return path


# -- a real engine server on an ephemeral loopback port (tests/server narrows its limits) ---------------
@pytest.fixture(scope="session")
def config_dir(tmp_path_factory) -> Path:
    """UPREZ_CONFIG_DIR for the whole session, so servers and clients find the same token."""
    folder = tmp_path_factory.mktemp("uprez-config")
    previous = os.environ.get("UPREZ_CONFIG_DIR")
    os.environ["UPREZ_CONFIG_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("UPREZ_CONFIG_DIR", None)
    else:
        os.environ["UPREZ_CONFIG_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_flux(tiny_model) -> Path:
    return tiny_model("flux-dev")


@pytest.fixture(scope="session")
def start_server(config_dir, tiny_flux):
    """`start_server(**config) -> RunningServer` on 127.0.0.1:0 with the tiny FLUX model; all stopped at the end."""
    started = []

    def start(**overrides):
        values = {"host": "127.0.0.1", "port": 0, "model": str(tiny_flux), "device": "cpu", "queue_size": 4,
                  "config_dir": config_dir, "model_dirs": (tiny_flux.parent,)}
        values.update(overrides)
        server = start_in_thread(ServerConfig(**values))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server):
    """The shared engine for tests that leave no job behind."""
    return start_server()


@pytest.fixture
def client(server) -> Client:
    """A client that finds its token in UPREZ_CONFIG_DIR, as a bridge would."""
    return Client(server.url)


class ServeProcess:
    """A `uprez serve` process: its URL (from engine.json), its config folder, and the process."""

    def __init__(self, process: subprocess.Popen, url: str, config_dir: Path) -> None:
        self.process, self.url, self.config_dir = process, url, config_dir

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="session")
def serve_process(tmp_path_factory):
    """`serve_process(*flags) -> ServeProcess`: the real `uprez serve --port 0` as users run it, in its own
    config folder; every one started is stopped at the end of the session."""
    started: list[ServeProcess] = []

    def start(*flags: str) -> ServeProcess:
        config = tmp_path_factory.mktemp("serve-config")
        env = dict(os.environ, UPREZ_CONFIG_DIR=str(config))
        env.pop("UPREZ_URL", None)
        log = open(config / "serve.log", "wb")  # noqa: SIM115 - the process writes to it until stopped
        process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--device", "cpu",
                                    *flags], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"uprez serve exited: {(config / 'serve.log').read_text()[-2000:]}")
            try:
                info = json.loads((config / "engine.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == process.pid:
                server = ServeProcess(process, info["url"], config)
                started.append(server)
                return server
            time.sleep(0.1)
        process.kill()
        raise RuntimeError("uprez serve did not publish engine.json within 120 s")

    yield start
    for server in started:
        server.stop()


