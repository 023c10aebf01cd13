"""The engine's own virtual environment: a Python >= 3.10, the right torch build, then Uprez itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from .locations import Host, venv_python, venv_script
from .manifest import Manifest
from .steps import InstallError, Step
from .torch_choice import TORCH_VERSION, TorchBuild

MIN_ENGINE_PYTHON = (3, 10)  # pyproject.toml's requires-python
TORCH_SUFFIX = {"cpu": "+cpu", "cuda": "+cu", "rocm": "+rocm"}


def _output(command: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def python_version(python: str) -> tuple | None:
    text = _output([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    try:
        return tuple(int(x) for x in text.split(".")) if text else None
    except ValueError:
        return None


def find_python(given: str | None, which: Callable[[str], str | None] = shutil.which) -> str:
    """The interpreter that creates the venv: --python, this one if new enough, else a python3.1x on PATH."""
    if given:
        version = python_version(given)
        if version is None:
            raise InstallError(f"--python {given} does not run")
        if version < MIN_ENGINE_PYTHON:
            raise InstallError(f"--python {given} is Python {version[0]}.{version[1]}; the engine needs 3.10 or newer")
        return given
    if sys.version_info[:2] >= MIN_ENGINE_PYTHON:
        return sys.executable
    for minor in range(14, MIN_ENGINE_PYTHON[1] - 1, -1):
        found = which(f"python3.{minor}")
        if found and (python_version(found) or (0,)) >= MIN_ENGINE_PYTHON:
            return found
    running = ".".join(str(n) for n in sys.version_info[:2])
    raise InstallError(f"this is Python {running} and the engine needs 3.10 or newer; "
                       "install one (python.org, your package manager, pyenv) and pass --python PATH")


def installed_torch(python: Path) -> str | None:
    return _output([str(python), "-c", "import torch; print(torch.__version__)"]) if python.exists() else None


def torch_matches(version: str | None, build: TorchBuild, host: Host) -> bool:
    """True when the venv already has the pinned torch of the wanted kind (so a re-run downloads nothing)."""
    if not version or version.split("+")[0] != TORCH_VERSION:
        return False
    return host.system == "darwin" or TORCH_SUFFIX[build.kind] in version


def _pip(python: Path, *args: str) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    if subprocess.run(command).returncode != 0:
        raise InstallError(f"pip failed ({' '.join(command)}); its message is above. Check the network, "
                           "or use --torch/--torch-index for another torch build")


# spandrel (the upscale-model loader) without its torchvision dependency: PyPI's torchvision is built for CUDA
# torch and breaks beside a CPU or ROCm build, and Uprez's SR path does not need it (engine/sr/spandrel_import.py).
# pyproject.toml lists spandrel's other dependencies. Keep in step with scripts/setup.sh.
SPANDREL = "spandrel>=0.4.1,<0.5"


def _install_engine(python: Path, source: str) -> None:
    # Pin torch to what is installed: otherwise pip may 'upgrade' it to PyPI's default (CUDA) build.
    version = installed_torch(python)
    with tempfile.TemporaryDirectory(prefix="uprez-install-") as temp:
        constraints = Path(temp) / "constraints.txt"
        constraints.write_text(f"torch=={version}\n" if version else "")
        _pip(python, "--upgrade", source, "--constraint", str(constraints))
    _pip(python, "--no-deps", SPANDREL)


def engine_steps(host: Host, venv: Path, python: str, build: TorchBuild | None, source: str,
                 manifest: Manifest) -> list[Step]:
    """Create or reuse the venv, install torch unless the right one is there, then install or upgrade Uprez."""
    vpy = venv_python(venv, host)
    steps = []
    works = vpy.exists() and python_version(str(vpy)) is not None
    if works:
        steps.append(Step(f"engine: reuse the virtual environment {venv}"))
    else:
        verb = "re-create the broken" if vpy.exists() else "create the"

        def create() -> None:
            if venv.exists() and str(venv) not in manifest.paths:
                # --clear empties the folder: only ever one this installer made.
                raise InstallError(f"{venv} exists but this installer did not make it; move it away, or set "
                                   "UPREZ_DATA_DIR to another folder")
            manifest.make_dirs(venv.parent)
            manifest.add_path(venv)
            manifest.save()  # recorded before pip runs, so an interrupted install can still be uninstalled
            command = [python, "-m", "venv", "--clear", str(venv)]
            if subprocess.run(command).returncode != 0:
                raise InstallError(f"could not create the virtual environment ({' '.join(command)}); on Debian "
                                   "and Ubuntu install the python3-venv package")

        steps.append(Step(f"engine: {verb} virtual environment {venv} with {python}", create))
    torch_now = installed_torch(vpy) if works and build is not None else None  # starts Python, imports torch
    if build is None:
        steps.append(Step("engine: torch left as it is (--torch none)"))
    elif torch_matches(torch_now, build, host):
        steps.append(Step(f"engine: torch {torch_now} is already installed ({build.kind})"))
    else:
        where = f"from {build.index}" if build.index else "from PyPI"
        steps.append(Step(f"engine: install torch {TORCH_VERSION} for {build.kind} {where} ({build.reason})",
                          lambda: _pip(vpy, *build.pip_args())))
    steps.append(Step(f"engine: install or upgrade Uprez from {source}, and spandrel without torchvision",
                      lambda: _install_engine(vpy, source)))
    return steps


def default_source(installer: Path) -> str | None:
    """The checkout this installer belongs to, when it is one (a pyproject.toml beside installers/)."""
    root = installer.resolve().parent.parent
    return str(root) if (root / "pyproject.toml").is_file() else None


def engine_command(venv: Path, host: Host) -> list[str]:
    """How the bridges (and people) start the engine installed in `venv`."""
    return [str(venv_script(venv, "uprez", host)), "serve"]
