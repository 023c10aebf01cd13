"""The client tests' own engine: the root `server` is created once per session and tests/server tightens its
limits, so a session that runs these first must not hand it a server with the default limits."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def server(start_server):
    return start_server()
