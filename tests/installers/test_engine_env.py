"""The engine's environment: which torch build each machine gets, and a real venv + pip install."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from layouts import make_home

from installers import install
from installers.engine_env import find_python, torch_matches
from installers.locations import Host
from installers.steps import InstallError
from installers.torch_choice import TorchBuild, choose

SMI = "| NVIDIA-SMI 570.86   Driver Version: 570.86   CUDA Version: {} |"


def tools(found: dict):
    """`which` and `run` for a machine whose GPU tools print `found[name]` (None = tool fails)."""
    return (lambda name: f"/usr/bin/{name}" if name in found else None,
            lambda command: found.get(command[0]))


@pytest.mark.parametrize(("system", "machine", "found", "wanted", "kind", "index"), [
    ("linux", "x86_64", {"nvidia-smi": SMI.format("12.8")}, "auto", "cuda", "https://download.pytorch.org/whl/cu128"),
    ("linux", "x86_64", {"nvidia-smi": SMI.format("13.1")}, "auto", "cuda", "https://download.pytorch.org/whl/cu130"),
    ("linux", "x86_64", {"nvidia-smi": SMI.format("12.4")}, "auto", "cuda", "https://download.pytorch.org/whl/cu126"),
    ("win32", "AMD64", {"nvidia-smi": SMI.format("12.9")}, "auto", "cuda", "https://download.pytorch.org/whl/cu128"),
    ("linux", "x86_64", {"nvidia-smi": None}, "auto", "cpu", "https://download.pytorch.org/whl/cpu"),  # no driver
    ("linux", "x86_64", {"rocminfo": "Agent 2 gfx1100"}, "auto", "rocm", "https://download.pytorch.org/whl/rocm6.4"),
    ("linux", "x86_64", {}, "auto", "cpu", "https://download.pytorch.org/whl/cpu"),
    ("linux", "x86_64", {"nvidia-smi": SMI.format("12.8")}, "cpu", "cpu", "https://download.pytorch.org/whl/cpu"),
    ("linux", "x86_64", {}, "cuda", "cuda", "https://download.pytorch.org/whl/cu126"),
    ("darwin", "arm64", {}, "auto", "mps", None),
    ("darwin", "x86_64", {}, "auto", "cpu", None),
    ("win32", "AMD64", {}, "auto", "cpu", "https://download.pytorch.org/whl/cpu"),
])
def test_torch_build_for_each_machine(system, machine, found, wanted, kind, index):
    which, run = tools(found)
    build = choose(Host(system, Path("/home/u"), {}, machine), wanted, run=run, which=which)
    assert (build.kind, build.index) == (kind, index)
    assert build.pip_args()[0] == "torch==2.13.0"


@pytest.mark.parametrize(("system", "wanted", "message"), [
    ("darwin", "cuda", "not available on macOS"), ("linux", "mps", "only for macOS"),
    ("win32", "rocm", "no ROCm build for Windows"),
])
def test_impossible_torch_builds_say_why(system, wanted, message):
    which, run = tools({})
    with pytest.raises(ValueError, match=message):
        choose(Host(system, Path("/home/u")), wanted, run=run, which=which)


def test_an_existing_torch_is_kept_only_when_it_is_the_wanted_build():
    linux = Host("linux", Path("/home/u"))
    cpu, cuda = TorchBuild("cpu", "x", ""), TorchBuild("cuda", "x", "")
    assert torch_matches("2.13.0+cpu", cpu, linux) and not torch_matches("2.13.0+cpu", cuda, linux)
    assert torch_matches("2.13.0+cu128", cuda, linux) and not torch_matches("2.12.0+cu128", cuda, linux)
    assert not torch_matches("2.13.0", cpu, linux)  # PyPI's Linux wheel is a CUDA build
    assert torch_matches("2.13.0", TorchBuild("mps", None, ""), Host("darwin", Path("/Users/u")))


def test_an_old_python_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "python"
    old.write_text("#!/bin/sh\necho 3.8\n")
    old.chmod(0o755)
    with pytest.raises(InstallError, match="needs 3.10 or newer"):
        find_python(str(old))
    assert find_python(None) == sys.executable  # this test runs on >= 3.10


def _wheel(folder: Path) -> Path:
    """A real (tiny) wheel with an `uprez` console script, standing in for the engine so pip needs no network."""
    name = "uprez_stub-0.1.0"
    files = {
        "uprez_stub.py": "import sys\n\ndef main():\n    print('stub engine', ' '.join(sys.argv[1:]))\n",
        f"{name}.dist-info/METADATA": "Metadata-Version: 2.1\nName: uprez-stub\nVersion: 0.1.0\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}.dist-info/entry_points.txt": "[console_scripts]\nuprez = uprez_stub:main\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{name}.dist-info/RECORD"] = "\n".join(record + [f"{name}.dist-info/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_real_venv_install_rerun_and_uninstall(tmp_path, capsys):
    """python -m venv and pip for real (a stub wheel as the engine, torch left out), then re-run and remove."""
    fake = make_home(tmp_path, "linux", krita=False, gimp=())
    wheel = _wheel(tmp_path)
    argv = ["--torch", "none", "--engine-from", str(wheel), "--no-krita", "--no-gimp"]
    started = time.monotonic()
    assert install.main(argv, host=fake.host) == 0, capsys.readouterr().err
    first_s = time.monotonic() - started
    venv = fake.data / "venv"
    command = json.loads((fake.config / "bridge.json").read_text())["start_command"]
    assert command == [str(venv / "bin" / "uprez"), "serve"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "stub engine serve"  # the command the bridges run starts the installed engine
    started = time.monotonic()
    assert install.main(argv, host=fake.host) == 0
    out = capsys.readouterr().out
    assert f"engine: reuse the virtual environment {venv}" in out
    with capsys.disabled():
        print(f"\nvenv install {first_s:.1f} s, re-run {time.monotonic() - started:.1f} s")
    assert install.main(["--uninstall"], host=fake.host) == 0
    assert not venv.exists() and not fake.data.exists() and not (fake.config / "bridge.json").exists()


@pytest.mark.skipif(os.environ.get("UPREZ_TEST_FULL_INSTALL") != "1",
                    reason="installs torch and the engine's dependencies (minutes); set UPREZ_TEST_FULL_INSTALL=1")
def test_full_install_with_cpu_torch_runs_the_engine(tmp_path, capsys):
    fake = make_home(tmp_path, "linux", krita=False, gimp=())
    host = Host("linux", fake.home, {**fake.host.environ, "PATH": os.environ["PATH"]})
    started = time.monotonic()
    assert install.main(["--torch", "cpu", "--no-krita", "--no-gimp"], host=host) == 0
    with capsys.disabled():
        print(f"\nfull install {time.monotonic() - started:.0f} s")
    python = fake.data / "venv" / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import torch, engine; print(torch.__version__)"],
                             capture_output=True, text=True, timeout=300)
    assert version.stdout.strip() == "2.13.0+cpu", version.stderr
    uprez = subprocess.run([str(fake.data / "venv" / "bin" / "uprez"), "--version"], capture_output=True, text=True)
    assert uprez.stdout.startswith("uprez ")
    started = time.monotonic()
    assert install.main(["--torch", "cpu", "--no-krita", "--no-gimp"], host=host) == 0
    assert "torch 2.13.0+cpu is already installed" in capsys.readouterr().out
    with capsys.disabled():
        print(f"re-run (upgrade in place) {time.monotonic() - started:.0f} s")
