"""Fixtures for the installer tests: a fake home per platform layout, and this checkout's bridges."""

from __future__ import annotations

import pytest
from layouts import LAYOUTS, PLUGIN, FakeHome, make_home

from installers.bridges import Sources


@pytest.fixture(params=sorted(LAYOUTS))
def fake_home(request, tmp_path) -> FakeHome:
    return make_home(tmp_path, request.param)


@pytest.fixture
def sources() -> Sources:
    """The real bridges of this checkout; a missing bridge file is a failure, not a skip."""
    found = Sources(PLUGIN)
    found.check_krita()
    found.check_gimp()
    return found
