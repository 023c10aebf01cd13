"""What a test needs from the machine, and what happens when it is missing: a skip on a person's machine,
a failure under CI=true (a CI run that silently skipped the Krita or GIMP tests would prove nothing).

UPREZ_TEST_ALLOW_MISSING=krita,gimp-chroot (or `all`) turns named failures back into skips, for a CI-like
run on a machine that cannot have them. The names: krita, krita-chroot, xvfb, debootstrap, gimp-chroot, photos,
python3.8.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ALLOW_ENV = "UPREZ_TEST_ALLOW_MISSING"


def strict(environ: dict | None = None) -> bool:
    """True under CI=true (any spelling GitHub, GitLab and others use)."""
    environ = os.environ if environ is None else environ
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def allowed(what: str, environ: dict | None = None) -> bool:
    environ = os.environ if environ is None else environ
    names = {name.strip() for name in environ.get(ALLOW_ENV, "").split(",") if name.strip()}
    return what in names or "all" in names


def missing(what: str, reason: str) -> NoReturn:
    """Skip, or under CI=true fail, because `what` is not on this machine."""
    if strict() and not allowed(what):
        pytest.fail(f"{reason} -- under CI=true a missing {what} fails the test (set {ALLOW_ENV}={what} to "
                    "skip it instead)", pytrace=False)
    pytest.skip(reason)


def needs(available: object, what: str, reason: str) -> pytest.MarkDecorator:
    """A marker: the test runs when `available` is truthy, else `missing(what, reason)` at its set-up."""
    return pytest.mark.uprez_needs(available=bool(available), what=what, reason=reason)


def check_marks(item: pytest.Item) -> None:
    """Called from tests/conftest.py before each test."""
    for mark in item.iter_markers("uprez_needs"):
        if not mark.kwargs["available"]:
            missing(mark.kwargs["what"], mark.kwargs["reason"])


def python38() -> str | None:
    """A working Python 3.8 for the bridges' oldest-Python tests: $UPREZ_PYTHON38, pyenv's 3.8.x (what .ci/run
    installs when none is there), or `python3.8` on PATH; each is run once to check it is 3.8 (a pyenv shim
    on PATH exists even where that version is not selected, and then fails)."""
    import glob
    import shutil
    import subprocess
    from pathlib import Path

    given = os.environ.get("UPREZ_PYTHON38", "").strip()
    root = os.environ.get("PYENV_ROOT", "").strip() or str(Path.home() / ".pyenv")
    candidates = [given] if given else [*sorted(glob.glob(os.path.join(root, "versions", "3.8.*", "bin", "python3.8")),
                                                reverse=True), shutil.which("python3.8")]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    return None


PY38_REASON = "no Python 3.8 here (pyenv install 3.8.18, or set UPREZ_PYTHON38 to one)"
