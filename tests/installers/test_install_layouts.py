"""The installer against fake homes laid out as Linux (XDG, Flatpak, Snap), Windows and macOS lay them out."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

from layouts import KRITARC, PLUGIN, ROOT, make_home, snapshot
from needs import PY38_REASON, needs, python38

from installers import install
from installers.locations import config_dir, gimp_targets, krita_targets

CLIENT_FILES = sorted(p.name for p in (PLUGIN / "uprez_client").glob("*.py"))


def run(fake, sources, *argv: str) -> int:
    return install.main(list(argv), host=fake.host, sources=sources)


def test_dry_run_prints_every_step_and_changes_nothing(fake_home, sources, capsys):
    before = snapshot(fake_home.home)
    assert run(fake_home, sources, "--dry-run", "--torch", "cpu") == 0
    out = capsys.readouterr().out
    assert snapshot(fake_home.home) == before
    venv = fake_home.data / "venv"
    expected = [
        f"would engine: create the virtual environment {venv}",
        "would engine: install torch 2.13.0 for cpu",
        f"would engine: install or upgrade Uprez from {ROOT}",
        f"to {fake_home.pykrita / 'uprez_krita'}",
        f"enable the plug-in in {fake_home.kritarc} ([python] enable_uprez_krita=true)",
        f"to {fake_home.gimp_plug_ins('3.0') / 'uprez-upscale'}, executable",
        f"to {fake_home.gimp_plug_ins('3.2') / 'uprez-upscale'}, executable",
        f"would settings: write {fake_home.config / 'bridge.json'}",
        f"would record what was installed in {fake_home.data / 'install-manifest.json'}",
    ]
    for line in expected:
        assert line in out, f"{line!r} missing from:\n{out}"
    if fake_home.layout.system == "darwin":
        assert "from PyPI" in out  # macOS wheels (MPS) are on PyPI, not on PyTorch's CPU index
    else:
        assert "from https://download.pytorch.org/whl/cpu" in out


def test_install_places_both_bridges_with_their_client(fake_home, sources, capsys):
    assert run(fake_home, sources, "--skip-engine") == 0
    package = fake_home.pykrita / "uprez_krita"
    assert (package / "__init__.py").read_bytes() == (PLUGIN / "krita" / "uprez_krita" / "__init__.py").read_bytes()
    assert sorted(p.name for p in (package / "uprez_client").glob("*.py")) == CLIENT_FILES
    desktop = fake_home.pykrita / "uprez_krita.desktop"
    assert desktop.read_bytes() == (PLUGIN / "krita" / "uprez_krita.desktop").read_bytes()
    assert not list(fake_home.home.rglob("__pycache__"))
    # kritarc: our key added to the existing [python] section, every other line kept as it was
    text = fake_home.kritarc.read_text()
    assert text == KRITARC.replace("enable_scripter=true\n", "enable_scripter=true\nenable_uprez_krita=true\n")
    for version in ("3.0", "3.2"):
        folder = fake_home.gimp_plug_ins(version) / "uprez-upscale"
        script = folder / "uprez-upscale.py"
        assert script.read_bytes() == (PLUGIN / "gimp" / "uprez-upscale" / "uprez-upscale.py").read_bytes()
        assert script.stat().st_mode & stat.S_IXUSR, "GIMP only runs an executable plug-in"
        assert sorted(p.name for p in (folder / "uprez_client").glob("*.py")) == CLIENT_FILES
    settings = json.loads((fake_home.config / "bridge.json").read_text())
    assert settings == {"url": "http://127.0.0.1:8742", "token_file": str(fake_home.config / "token"),
                        "start_command": None, "engine_dir": None}
    assert (fake_home.data / "install-manifest.json").is_file()


def test_settings_land_where_the_bridges_client_looks(fake_home, monkeypatch):
    """The installer computes the config folder itself (it runs before anything is installed); the client the
    bridges carry must agree, or they would never find bridge.json."""
    import importlib.util

    # The client's rule lives in uprez_client/protocol.py (standard library only, loadable on its own).
    spec = importlib.util.spec_from_file_location("protocol", PLUGIN / "uprez_client" / "protocol.py")
    protocol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocol)
    monkeypatch.setenv("HOME", str(fake_home.home))  # the client finds ~ through os.path.expanduser
    assert protocol.config_dir(fake_home.host.system, fake_home.host.environ) == str(config_dir(fake_home.host))


def test_rerun_is_idempotent_and_upgrades_in_place(tmp_path, sources, capsys):
    fake = make_home(tmp_path, "linux")
    assert run(fake, sources, "--skip-engine") == 0
    first = snapshot(fake.home)
    stale = fake.pykrita / "uprez_krita" / "removed_in_this_version.py"
    stale.write_text("old = True\n")
    (fake.gimp_plug_ins("3.0") / "uprez-upscale" / "uprez-upscale.py").write_text("# an older release\n")
    assert run(fake, sources, "--skip-engine") == 0
    assert snapshot(fake.home) == first  # stale file gone, old script replaced, kritarc key not doubled


def test_uninstall_leaves_exactly_what_was_there_before(fake_home, sources, capsys):
    other = fake_home.pykrita / "someone_elses_plugin"  # the user's own plug-ins stay
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("x = 1\n")
    before = snapshot(fake_home.home)
    assert run(fake_home, sources, "--skip-engine") == 0
    assert snapshot(fake_home.home) != before
    assert run(fake_home, sources, "--uninstall", "--dry-run") == 0
    assert "would remove" in capsys.readouterr().out
    assert run(fake_home, sources, "--uninstall") == 0
    assert snapshot(fake_home.home) == before


def test_uninstall_restores_a_setting_the_user_had_and_keeps_their_later_files(tmp_path, sources, capsys):
    fake = make_home(tmp_path, "linux")
    before = KRITARC.replace("enable_scripter=true\n", "enable_scripter=true\nenable_uprez_krita=false\n")
    fake.kritarc.write_text(before)
    original = fake.kritarc.read_bytes()
    assert run(fake, sources, "--skip-engine") == 0
    assert "enable_uprez_krita=true" in fake.kritarc.read_text()
    assert run(fake, sources, "--skip-engine") == 0  # a re-run must not forget the user's original value
    (fake.config / "token").write_text("made by the engine later")  # not ours: it stays
    assert run(fake, sources, "--uninstall") == 0
    assert fake.kritarc.read_bytes() == original
    assert (fake.config / "token").is_file() and not (fake.config / "bridge.json").exists()
    assert run(fake, sources, "--uninstall") == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_editors_never_run_are_not_created(tmp_path, sources, capsys):
    """GIMP migrates a previous version's settings only into a profile folder that does not exist yet."""
    fake = make_home(tmp_path, "linux", krita=False, gimp=())
    assert run(fake, sources, "--skip-engine") == 0
    out = capsys.readouterr().out
    assert "no Krita user folder found" in out and "no GIMP 3 profile found" in out
    assert not fake.path(".config/GIMP").exists() and not fake.path(".local/share/krita").exists()
    assert not fake.kritarc.exists()


def test_only_gimp_3_profiles_are_used(tmp_path):
    fake = make_home(tmp_path, "linux", gimp=("2.10", "3.2", "3.4"))
    assert [t.profile.name for t in gimp_targets(fake.host)] == ["3.2", "3.4"]


def test_krita_resource_folder_chosen_in_its_settings_is_used(tmp_path, sources, capsys):
    fake = make_home(tmp_path, "linux")
    custom = tmp_path / "my-krita-resources"
    fake.kritarc.write_text("ResourceDirectory=" + str(custom) + "\n" + KRITARC)
    assert [t.resources for t in krita_targets(fake.host)] == [custom]
    assert run(fake, sources, "--skip-engine", "--no-gimp") == 0
    assert (custom / "pykrita" / "uprez_krita" / "__init__.py").is_file()
    assert not (fake.pykrita / "uprez_krita").exists()


def test_flatpak_and_native_krita_both_get_the_bridge(tmp_path, sources, capsys):
    fake = make_home(tmp_path, "linux")
    flatpak = fake.path(".var/app/org.kde.krita/data/krita")
    flatpak.mkdir(parents=True)
    assert run(fake, sources, "--skip-engine", "--no-gimp") == 0
    assert (fake.pykrita / "uprez_krita").is_dir() and (flatpak / "pykrita" / "uprez_krita").is_dir()
    assert "enable_uprez_krita=true" in fake.path(".var/app/org.kde.krita/config/kritarc").read_text()


def test_a_linked_development_copy_is_left_alone(tmp_path, sources, capsys):
    fake = make_home(tmp_path, "linux")
    fake.pykrita.mkdir(parents=True)
    (fake.pykrita / "uprez_krita").symlink_to(PLUGIN / "krita" / "uprez_krita")
    assert run(fake, sources, "--skip-engine", "--no-gimp") == 0
    assert "is a link" in capsys.readouterr().out
    assert (fake.pykrita / "uprez_krita").is_symlink()
    assert not (PLUGIN / "krita" / "uprez_krita" / "uprez_client").exists()  # nothing written through the link


def test_a_missing_bridge_is_a_clear_error(tmp_path, capsys):
    fake = make_home(tmp_path, "linux")
    empty = tmp_path / "plugin"
    shutil.copytree(PLUGIN / "uprez_client", empty / "uprez_client")
    from installers.bridges import Sources

    assert install.main(["--skip-engine"], host=fake.host, sources=Sources(empty)) == 1
    err = capsys.readouterr().err
    assert "the Krita bridge is incomplete" in err and "--no-krita" in err


PY38 = python38()


@needs(PY38, "python3.8", PY38_REASON)
def test_installer_runs_on_python_3_8(tmp_path, sources):
    """Install and uninstall for real with the oldest Python we support, as a user would run it."""
    fake = make_home(tmp_path, "linux")
    env = {"HOME": str(fake.home), "PATH": os.environ["PATH"], "PYENV_VERSION": "3.8.18:system"}
    before = snapshot(fake.home)
    for argv in (["--skip-engine"], ["--skip-engine"], ["--uninstall"]):
        done = subprocess.run([PY38, "-I", str(ROOT / "installers" / "install.py"), *argv], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        if argv[0] == "--skip-engine":
            assert (fake.pykrita / "uprez_krita" / "uprez_client" / "__init__.py").is_file()
    assert snapshot(fake.home) == before


def test_an_install_that_fails_halfway_can_still_be_uninstalled_completely(tmp_path, sources, capsys):
    """The Krita steps run, then the GIMP copy fails: what the Krita steps added must be on record."""
    fake = make_home(tmp_path, "linux", gimp=("3.0",))
    before = snapshot(fake.home)
    blocker = fake.gimp_plug_ins("3.0")
    had_folder = blocker.is_dir()
    if had_folder:
        blocker.rmdir()
    blocker.write_text("a file where GIMP's plug-ins folder goes\n")
    assert run(fake, sources, "--skip-engine") == 1
    assert "enable_uprez_krita=true" in fake.kritarc.read_text()
    blocker.unlink()
    if had_folder:
        blocker.mkdir()  # the home is as it was before the first try
    assert run(fake, sources, "--skip-engine") == 0  # the fixed re-run
    assert run(fake, sources, "--uninstall") == 0
    assert snapshot(fake.home) == before


def test_a_venv_the_installer_did_not_make_is_never_cleared(tmp_path, sources, capsys):
    fake = make_home(tmp_path, "linux")
    venv = fake.data / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("not a python\n")  # looks broken: the installer would re-create it
    (venv / "precious.txt").write_text("the user's\n")
    assert run(fake, sources, "--torch", "none", "--no-krita", "--no-gimp") == 1
    assert "this installer did not make it" in capsys.readouterr().err
    assert (venv / "precious.txt").read_text() == "the user's\n"
