"""`uprez models list | pull ID | remove ID | recommend`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.model_store import discover, hf_cache_dir, human_size


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
    pull = actions.add_parser("pull", help="download a diffusers model from the Hugging Face Hub (resumable)")
    pull.add_argument("repo_id", metavar="ID", help="organisation/name, e.g. black-forest-labs/FLUX.1-schnell")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main; also re-checks a cached model)")
    remove = actions.add_parser("remove", help="delete a model from the Hugging Face cache")
    remove.add_argument("model_id", metavar="ID", help="the id `uprez models list` shows")
    actions.add_parser("recommend", help="a short list of models with licence, size and VRAM need")


def run_models(args: argparse.Namespace) -> int:
    from engine.server.config import uprez_config_dir

    config = uprez_config_dir()
    if args.models_command == "recommend":
        from engine.model_catalog import table

        installed = {m.id for m in discover(config) if m.complete}
        print(table(installed))
        return 0
    if args.models_command == "pull":
        from engine.model_pull import pull

        elsewhere = [m for m in discover(config) if m.where != "hf-cache"]
        pull(args.repo_id, elsewhere=elsewhere, revision=args.revision)
        return 0
    if args.models_command == "remove":
        from engine.model_store import remove

        model = remove(args.model_id, discover(config))
        print(f"removed {model.id} ({human_size(model.size)}) from the Hugging Face cache", file=sys.stderr)
        return 0
    models = discover(config, args.model_dir)
    print("builtin  (Uprez's own small model, always installed)")
    for model in models:
        state = "" if model.complete else f"  INCOMPLETE, missing {', '.join(model.missing)}: run " \
                                          f"`uprez models pull {model.id}` to finish"
        family = f", {model.family}" if model.family else ""
        print(f"{model.id}  {human_size(model.size)}  {model.where}{family}: {model.path}{state}")
    if not models:
        print(f"no other models found (Hugging Face cache: {hf_cache_dir()}); `uprez models recommend` suggests "
              "some, `uprez models pull ID` fetches one")
    return 0
