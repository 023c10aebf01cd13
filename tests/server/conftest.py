"""A real engine server on an ephemeral loopback port with a tiny random FLUX model (helpers: server_helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from server_helpers import TEST_LIMITS

from engine.server import ServerConfig, start_in_thread
from plugin.uprez_client import Client


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
    """`start_server(**config) -> RunningServer` on 127.0.0.1:0 with the tiny model; all stopped at the end."""
    started = []

    def start(**overrides):
        values = {"host": "127.0.0.1", "port": 0, "model": str(tiny_flux), "device": "cpu", "queue_size": 4,
                  "limits": TEST_LIMITS, "config_dir": config_dir, "model_dirs": (tiny_flux.parent,)}
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
