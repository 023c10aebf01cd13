#!/usr/bin/env python3
"""Install Uprez: the engine's own environment, the Krita and GIMP bridges, and the settings they read.

    python installers/install.py              # everything this machine has an editor for
    python installers/install.py --dry-run    # print every step, change nothing
    python installers/install.py --uninstall  # remove what an install added, and nothing else

Standard library only; runs on Python 3.8+ (docs/install.md has every option).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make `installers` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugin.uprez_client.protocol import BRIDGE_FILE, DEFAULT_PORT  # noqa: E402

from installers import krita_zip  # noqa: E402
from installers.bridges import MissingBridge, Sources, copy_file, make_executable, replace_folder, stage_folder  # noqa: E402
from installers.engine_env import default_source, engine_command, engine_steps, find_python  # noqa: E402
from installers.files import write_text_atomic  # noqa: E402
from installers.locations import (  # noqa: E402
    GIMP_PLUGIN,
    KRITA_PLUGIN,
    GimpTarget,
    Host,
    KritaTarget,
    config_dir,
    data_dir,
    default_krita_target,
    gimp_targets,
    krita_targets,
)
from installers.manifest import FILE_NAME, Manifest, remove_path  # noqa: E402
from installers.steps import InstallError, Step, execute  # noqa: E402
from installers.torch_choice import CHOICES, choose  # noqa: E402

SETTINGS_FILE = BRIDGE_FILE  # what the bridges read to say how the engine is started
PLUGIN_ROOT = Path(__file__).resolve().parent.parent / "plugin"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print every step without doing it")
    parser.add_argument("--uninstall", action="store_true", help="remove what the installer added, nothing else")
    parser.add_argument("--torch", default="auto", choices=("auto", *CHOICES, "none"),
                        help="torch build for the engine (default: guessed from the GPU tools found); "
                             "none = leave torch as it is")
    parser.add_argument("--torch-index", metavar="URL", help="wheel index for torch (default: PyTorch's for the build)")
    parser.add_argument("--python", metavar="PATH", help="Python >= 3.10 for the engine (default: this one if new "
                        "enough, else a python3.1x on PATH)")
    parser.add_argument("--engine-from", metavar="SOURCE", help="what pip installs as the engine: a folder, wheel "
                        "or requirement (default: this checkout)")
    parser.add_argument("--skip-engine", action="store_true", help="only the bridges and settings, no engine "
                        "environment (for an engine you run yourself, e.g. on a GPU server)")
    parser.add_argument("--no-krita", action="store_true", help="do not install the Krita bridge")
    parser.add_argument("--no-gimp", action="store_true", help="do not install the GIMP plug-in")
    parser.add_argument("--krita-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="also install into this Krita resource folder (the one holding pykrita/)")
    parser.add_argument("--gimp-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="also install into this GIMP profile folder (e.g. ~/.config/GIMP/3.0)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the engine's port (default {DEFAULT_PORT})")
    parser.add_argument("--build-krita-zip", type=Path, metavar="OUT.zip",
                        help="only write the zip for Krita's Tools > Scripts > Import Python Plugin from File...")
    return parser


def krita_steps(target: KritaTarget, sources: Sources, manifest: Manifest) -> list[Step]:
    package = target.pykrita / KRITA_PLUGIN
    desktop = target.pykrita / f"{KRITA_PLUGIN}.desktop"
    if package.is_symlink():
        return [Step(f"{target.label}: {package} is a link (a development checkout?); left alone")]

    def copy_package() -> None:
        manifest.make_dirs(target.pykrita)
        manifest.add_path(package)
        staging = Path(tempfile.mkdtemp(prefix=".uprez-", dir=str(target.pykrita)))
        try:
            replace_folder(stage_folder(sources.krita_package, sources.client, staging / KRITA_PLUGIN), package)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def copy_desktop() -> None:
        manifest.add_path(desktop)
        copy_file(sources.krita_desktop, desktop)

    steps = [Step(f"{target.label}: copy the bridge (with its client) to {package}", copy_package),
             Step(f"{target.label}: copy {desktop.name} to {target.pykrita}", copy_desktop)]
    if sources.krita_action.is_file():
        action = target.resources / "actions" / sources.krita_action.name

        def copy_action() -> None:
            manifest.make_dirs(action.parent)
            manifest.add_path(action)
            copy_file(sources.krita_action, action)

        steps.append(Step(f"{target.label}: copy {action.name} to {action.parent}", copy_action))
    key = f"enable_{KRITA_PLUGIN}"
    steps.append(Step(f"{target.label}: enable the plug-in in {target.kritarc} ([python] {key}=true)",
                      lambda: manifest.set_kritarc(target.kritarc, "python", key, "true")))
    return steps


def gimp_steps(target: GimpTarget, sources: Sources, manifest: Manifest) -> list[Step]:
    folder = target.plug_ins / GIMP_PLUGIN
    if folder.is_symlink():
        return [Step(f"{target.label}: {folder} is a link (a development checkout?); left alone")]

    def copy_plugin() -> None:
        manifest.make_dirs(target.plug_ins)
        manifest.add_path(folder)
        staging = Path(tempfile.mkdtemp(prefix=".uprez-", dir=str(target.plug_ins)))
        try:
            staged = stage_folder(sources.gimp_folder, sources.client, staging / GIMP_PLUGIN)
            make_executable(staged / f"{GIMP_PLUGIN}.py")
            replace_folder(staged, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return [Step(f"{target.label}: copy the plug-in (with its client) to {folder}, executable", copy_plugin)]


def settings_step(host: Host, args: argparse.Namespace, venv: Path, manifest: Manifest) -> Step:
    folder = config_dir(host)
    path = folder / SETTINGS_FILE
    command = engine_command(venv, host) if not args.skip_engine else None
    on_path = shutil.which("uprez", path=host.environ.get("PATH"))
    if command is None and on_path:
        command = [on_path, "serve"]  # an engine the user installed some other way
    if command and args.port != DEFAULT_PORT:
        command += ["--port", str(args.port)]
    settings = {"url": f"http://127.0.0.1:{args.port}", "token_file": str(folder / "token"),
                "start_command": command, "engine_dir": None if args.skip_engine else str(venv)}

    def write() -> None:
        manifest.make_dirs(folder)
        with contextlib.suppress(OSError):  # the engine refuses a config folder others may write (token swap)
            folder.chmod(0o700)
        manifest.add_path(path)
        write_text_atomic(path, json.dumps(settings, indent=1) + "\n")

    how = " ".join(command) if command else "nothing (no engine installed here)"
    return Step(f"settings: write {path} (engine at {settings['url']}, started by: {how})", write)


def plan_install(args: argparse.Namespace, host: Host, sources: Sources, manifest: Manifest) -> list[Step]:
    steps: list[Step] = []
    venv = data_dir(host) / "venv"
    if not args.skip_engine:
        source = args.engine_from or default_source(Path(__file__))
        if source is None:
            raise InstallError("this installer is not inside an Uprez checkout; pass --engine-from with a folder, "
                               "wheel or requirement")
        try:
            build = None if args.torch == "none" else choose(host, args.torch, index=args.torch_index)
        except ValueError as exc:
            raise InstallError(str(exc)) from None
        steps += engine_steps(host, venv, find_python(args.python), build, source, manifest)
    if not args.no_krita:
        sources.check_krita()
        targets = krita_targets(host) + [KritaTarget("Krita (--krita-dir)", d, default_krita_target(host).kritarc)
                                         for d in args.krita_dir]
        if not targets:
            steps.append(Step("Krita: no Krita user folder found; start Krita once and re-run, or pass --krita-dir, "
                              "or import the zip from --build-krita-zip in Krita"))
        for target in targets:
            steps += krita_steps(target, sources, manifest)
    if not args.no_gimp:
        sources.check_gimp()
        targets = gimp_targets(host) + [GimpTarget("GIMP (--gimp-dir)", d) for d in args.gimp_dir]
        if not targets:
            steps.append(Step("GIMP: no GIMP 3 profile found; start GIMP 3 once and re-run, or pass --gimp-dir"))
        for target in targets:
            steps += gimp_steps(target, sources, manifest)
    steps.append(settings_step(host, args, venv, manifest))
    def record() -> None:
        manifest.make_dirs(manifest.path.parent)
        manifest.save()

    steps.append(Step(f"record what was installed in {manifest.path}", record))
    return steps


def plan_uninstall(manifest: Manifest) -> list[Step]:
    if manifest.is_empty():
        return [Step(f"nothing to remove: no install record at {manifest.path}")]
    steps = [Step(f"remove {path}", lambda p=Path(path): remove_path(p)) for path in reversed(manifest.paths)]
    for entry in manifest.kritarc:
        steps.append(Step(f"restore [{entry['section']}] {entry['key']} in {entry['path']} "
                          f"({'remove it' if entry['previous'] is None else 'back to ' + entry['previous']})",
                          lambda e=entry: manifest.restore_kritarc(e)))
    steps.append(Step(f"remove the install record {manifest.path}", lambda: manifest.path.unlink()))
    for folder in sorted(manifest.created_dirs, key=len, reverse=True):
        steps.append(Step(f"remove {folder} if empty (it was created by the installer)",
                          lambda f=Path(folder): _remove_if_empty(f)))
    return steps


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # something else lives there now (the editor or the user put it): keep it
        folder.rmdir()


def main(argv: Sequence[str] | None = None, host: Host | None = None, sources: Sources | None = None) -> int:
    args = build_parser().parse_args(argv)
    host = host or Host.current()
    sources = sources or Sources(PLUGIN_ROOT)
    try:
        if args.build_krita_zip:
            names = krita_zip.build(sources, args.build_krita_zip)
            print(f"wrote {args.build_krita_zip} ({len(names)} entries); in Krita: Tools > Scripts > Import Python "
                  "Plugin from File..., then restart Krita")
            return 0
        manifest = Manifest.load(data_dir(host) / FILE_NAME)
        steps = plan_uninstall(manifest) if args.uninstall else plan_install(args, host, sources, manifest)
        print(f"Uprez {'uninstall' if args.uninstall else 'install'}{' (dry run: nothing is changed)' * args.dry_run}:")
        try:
            execute(steps, args.dry_run)  # an install's last step records what it installed
        except BaseException:
            if not args.dry_run and not args.uninstall and not manifest.is_empty():
                # A step that failed halfway must not lose the record of what the earlier steps added:
                # --uninstall (or the next run) reads it.
                manifest.make_dirs(manifest.path.parent)
                manifest.save()
            raise
    except (InstallError, MissingBridge, ValueError, OSError) as exc:
        print(f"install.py: {exc}", file=sys.stderr)
        return 1
    if not args.dry_run and not args.uninstall:
        print("done. Start the engine with the command above (or from the Krita/GIMP dialog), then use "
              "Tools > Scripts > Upscale with Uprez... in Krita or Filters > Enhance in GIMP.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
