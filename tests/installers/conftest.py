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
    """The real bridges of this checkout; tests that install one skip with a reason while it is missing."""
    found = Sources(PLUGIN)
    for check, what in ((found.check_krita, "Krita bridge"), (found.check_gimp, "GIMP plug-in")):
        try:
            check()
        except Exception as exc:
            pytest.skip(f"the {what} is not in this checkout yet: {exc}")
    return found
