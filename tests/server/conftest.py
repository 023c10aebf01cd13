"""The server tests' engine: the shared fixtures of tests/conftest.py with tight request limits."""

from __future__ import annotations

import pytest
from server_helpers import TEST_LIMITS


@pytest.fixture(scope="session")
def start_server(start_server):
    """The root `start_server`, with limits small enough that the size refusals are quick to reach."""

    def start(**overrides):
        overrides.setdefault("limits", TEST_LIMITS)
        return start_server(**overrides)

    return start


@pytest.fixture(scope="session")
def server(start_server):
    """The server tests' own shared engine, with the tight limits: the root `server` is made once per session by
    whichever test asks first, maybe outside this folder with the default limits."""
    return start_server()
