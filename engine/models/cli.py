"""`uprez models list | pull ID | remove ID | recommend`."""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from pathlib import Path

from engine.memory import format_bytes
from engine.models.plan_cli import add_plan_parser
from engine.models.store import LocalModel, discover, hf_cache_dir, repo_folder

EXIT_CANCELLED = 130  # as engine.cli's: the shell's code for a command ended by Ctrl-C
PRIVATE_PARTIAL = re.compile(r"^[^.]+\.[0-9a-f]{8}\.incomplete$")


def add_models_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models", help="list, download, remove and recommend models",
        description="Models are found in the Hugging Face cache (HF_HUB_CACHE / HF_HOME), ComfyUI's models/ "
        "folders (UPREZ_COMFYUI_DIRS, or \"comfyui\" in <config>/models.json, and ~/ComfyUI, "
        "~/Documents/ComfyUI), UPREZ_MODEL_DIRS and <config>/models. `pull` downloads into the Hugging Face cache.")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="models on this machine, with size and where they are")
    listing.add_argument("--model-dir", action="append", type=Path, default=[], metavar="DIR",
                         help="also look in this folder (repeatable)")
    pull = actions.add_parser("pull", help="download a diffusers model from the Hugging Face Hub (run it again "
                              "to finish an interrupted one)")
    pull.add_argument("repo_id", metavar="ID", help="organisation/name, e.g. black-forest-labs/FLUX.1-schnell")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main; also re-checks a cached model)")
    remove = actions.add_parser("remove", help="delete a model from the Hugging Face cache")
    remove.add_argument("model_id", metavar="ID", help="the id `uprez models list` shows")
    actions.add_parser("recommend", help="a short list of models with licence, size and VRAM per memory mode")
    add_plan_parser(actions)


def run_models(args: argparse.Namespace) -> int:
    from engine.server.config import uprez_config_dir

    config = uprez_config_dir()
    if args.models_command == "recommend":
        from engine.models.catalog import table
        from engine.models.plan_cli import mode_table

        installed = {m.id for m in discover(config) if m.complete}
        print(table(installed))
        print()
        print(mode_table())
        from engine.sr import catalog as sr_catalog
        from engine.sr.find import scan_sr, sr_folders

        print()
        print(sr_catalog.table({m.path.name for m in scan_sr(sr_folders(config))}))
        return 0
    if args.models_command == "plan":
        from engine.models.plan_cli import run_plan

        return run_plan(args)
    if args.models_command == "pull":
        from engine.sr.catalog import find as find_sr

        if find_sr(args.repo_id) is not None:  # an upscale model: one file into Uprez's SR folder
            from engine.sr.catalog import pull_sr
            from engine.sr.find import OWN_FOLDER

            path = pull_sr(find_sr(args.repo_id), config / OWN_FOLDER)
            print(f"{args.repo_id}: {path} ({format_bytes(path.stat().st_size)})", file=sys.stderr)
            return 0
        elsewhere = [m for m in discover(config) if m.where != "hf-cache"]
        _pull_until_interrupted(args.repo_id, elsewhere, args.revision)
        return 0
    if args.models_command == "remove":
        from engine.models.store import remove

        model = remove(args.model_id, discover(config))
        print(f"removed {model.id} ({format_bytes(model.size)}) from the Hugging Face cache", file=sys.stderr)
        return 0
    models = discover(config, args.model_dir)
    print("builtin  (Uprez's own small model, always installed)")
    for model in models:
        state = "" if model.complete else f"  INCOMPLETE, missing {', '.join(model.missing)}: run " \
                                          f"`uprez models pull {model.id}` to finish"
        family = f", {model.family}" if model.family else ""
        storage = f", {model.storage}" if model.storage else ""
        print(f"{model.id}  {format_bytes(model.size)}  {model.where}{family}{storage}: {model.path}{state}")
        if model.kind in ("safetensors", "gguf") and model.family:
            from engine.backends.pairing import pairing_note

            print(f"    {pairing_note(model.path, model.family)}")
        elif model.kind in ("vae", "text-encoder"):
            print(f"    a loose {model.kind} file; transformer files take theirs from a diffusers base")
    _list_sr(config)
    _list_loras(config)
    if not models:
        print(f"no other models found (Hugging Face cache: {hf_cache_dir()}); `uprez models recommend` suggests "
              "some, `uprez models pull ID` fetches one")
    return 0


def _list_loras(config: Path) -> None:
    """LoRAs in the LoRA folders, with the family each fits (from its keys)."""
    from engine.lora.find import find_loras

    found = find_loras(config)
    if found:
        print("LoRAs (--lora NAME[:WEIGHT] with a model of the family shown):")
    for lora in found:
        print(f"{lora.name}  {format_bytes(lora.size)}  {lora.where}, {' or '.join(lora.families) or 'unknown family'}"
              f": {lora.path}")


def _list_sr(config: Path) -> None:
    """Upscale models in the SR folders, with the architecture and scale spandrel reads from each."""
    from engine.sr.find import describe, scan_sr, sr_folders

    found = scan_sr(sr_folders(config))
    if not found:
        return
    print("upscale models (--model NAME on their own, --upsampler NAME before a flow refine):")
    for model in map(describe, found):
        what = f"{model.architecture} {model.scale}x" if model.error is None else f"does not load: {model.error}"
        print(f"  {model.name}  {what}  {format_bytes(model.size)}  {model.where}: {model.path}")


def _pull_until_interrupted(repo_id: str, elsewhere: list[LocalModel], revision: str | None) -> None:
    """Run the pull in a daemon thread so that Ctrl-C stops it at once: huggingface_hub downloads in a thread
    pool which, once interrupted, still waits for every file in flight (minutes for a 10 GiB shard). The files
    finished so far stay in the cache, and the next pull fetches only the rest."""
    from engine.models.pull import pull

    blobs = repo_folder(hf_cache_dir(), repo_id) / "blobs"
    before = _private_partials(blobs)
    failure: list[BaseException] = []

    def download() -> None:
        try:
            pull(repo_id, elsewhere=elsewhere, revision=revision)
        except BaseException as exc:  # handed to the main thread, which reports it as any other error
            failure.append(exc)

    worker = threading.Thread(target=download, name="uprez-pull", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        for partial in _private_partials(blobs) - before:
            partial.unlink(missing_ok=True)
        print(f"\nuprez: interrupted; the partial download is kept (the files finished so far) and "
              f"`uprez models pull {repo_id}` fetches the rest", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_CANCELLED)  # not sys.exit: that would wait for the download threads to finish their files
    if failure:
        raise failure[0]


def _private_partials(blobs: Path) -> set[Path]:
    """Files in flight that no later run can use: newer huggingface_hub writes each download to
    <etag>.<8 hex digits>.incomplete, unique to its process, and deletes it itself unless the process is cut
    short. (Older versions append to a shared <etag>.incomplete and resume it, so that one is kept.)"""
    try:
        return {p for p in blobs.glob("*.incomplete") if PRIVATE_PARTIAL.match(p.name)}
    except OSError:
        return set()
