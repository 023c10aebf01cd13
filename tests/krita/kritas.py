"""The Krita versions the bridge is tested in, and how a test runs a command in one (run-krita.sh).

host: the Krita installed on this machine (5.1 on Debian 12); sid: Krita 5.3 (Qt 5); experimental: Krita 6.0
(Qt 6, PyQt6). The chroots are built once by run-krita.sh and cached in /var/cache/uprez-<suite>.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from needs import missing

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNNER = HERE / "run-krita.sh"
VERSIONS = ("host", "sid", "experimental")
NEWEST = "experimental"
LABELS = {"host": "Krita 5.1 (host)", "sid": "Krita 5.3 (Debian sid)",
          "experimental": "Krita 6.0 (Debian experimental)"}
CANNOT = 77  # run-krita.sh: this machine cannot make the chroot
SEEN: dict[str, str] = {}  # version -> the "krita version: ..." line, printed at the end of the run (conftest.py)
TIMES: dict[str, str] = {}  # version -> how long each scenario took there


def clean_env(extra: dict[str, str], version: str = "host") -> dict[str, str]:
    """What Krita gets: no venv or pyenv (Krita embeds the system Python and finds it through PATH: a venv's
    python3 first on PATH would hand it a foreign standard library without PyQt)."""
    # QT_QPA_PLATFORM neither: other test modules set it to offscreen in this process, and Krita 6 under Qt 6's
    # offscreen platform opens its own Xlib display for GLX and dies at start with an X BadWindow on
    # X_DestroyWindow (the CI failure of stop 14). A test that wants offscreen passes it in `extra`.
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("UPREZ_", "PYTHON", "PYENV", "VIRTUAL_ENV")) and k != "QT_QPA_PLATFORM"}
    if version == "host":  # (run-krita.sh sets the chroot's own PATH)
        kritarunner = shutil.which("kritarunner") or "/usr/bin/kritarunner"
        base["PATH"] = os.pathsep.join([str(Path(kritarunner).parent), "/usr/bin", "/bin"])
    base.update(extra)
    return base


def run(version: str, argv: list[str], env: dict[str, str], binds: list[Path | str] = (),
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `argv` where `version`'s Krita is: here for host, else in its chroot with `binds` (and this checkout)
    mounted at the same paths. Calls needs.missing where that Krita cannot be had (a failure under CI=true)."""
    if version == "host":
        if not shutil.which("kritarunner"):
            missing("krita", "Krita is not installed (apt-get install -y krita xvfb)")
        command = argv
    else:
        if os.name != "posix" or os.geteuid() != 0:
            missing("krita-chroot", f"{LABELS[version]} runs in a chroot, which needs root")
        if not shutil.which("debootstrap"):
            missing("krita-chroot", "debootstrap is not installed (apt-get install -y debootstrap)")
        command = ["bash", str(RUNNER), version]
        for folder in binds:
            command += ["--bind", str(folder)]
        command += ["--", *argv]
    done = subprocess.run(command, env=clean_env(env, version), timeout=timeout, capture_output=True, text=True)
    if version != "host" and done.returncode == CANNOT:
        missing("krita-chroot", done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "cannot build")
    line = re.search(r"krita version: .*", done.stderr)
    if line:
        SEEN[version] = line.group(0)
    elif version == "host":
        SEEN.setdefault(version, "krita version: " + _host_version() + " (host)")
    return done


def _host_version() -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "krita"], capture_output=True,
                              text=True, timeout=30).stdout.strip() or "unknown"
    except OSError:
        return "unknown"
