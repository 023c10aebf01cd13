"""`uprez models pull`: fetch a diffusers model from the Hugging Face Hub into its cache, once.

Only what the loader uses is fetched: model_index.json and the components it names, in safetensors, default
precision. Repos such as FLUX.1-dev also carry the same weights as one big root-level file (another 22 GiB),
which a whole-repo download would fetch for nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from engine.errors import InvalidInput, UprezError
from engine.memory import format_bytes
from engine.models.store import (
    REPO_ID,
    WEIGHTS,
    LocalModel,
    components,
    find_local,
    hf_cache_dir,
    repo_folder,
    same_name,
    scan_hf_cache,
)

VARIANT = re.compile(r"\.(fp16|bf16|fp32|fp8\w*|int8|nf4)(?=[.-])")
MARGIN = 2 * 2**30  # room left on the disk after the download: a full disk breaks more than the download


class PullError(UprezError):
    """A download that cannot start or finish; the message says what to do."""


def _variant(name: str) -> str | None:
    match = VARIANT.search(name.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def select_files(files: list[str], index: Mapping[str, Any]) -> list[str]:
    """model_index.json and each component's configs plus one set of weights: safetensors over other formats,
    the default precision over variants (fp16, ...) unless only a variant exists."""
    chosen = ["model_index.json"]
    for component in components(index):
        inside = sorted(f for f in files if f.startswith(component + "/"))
        weights = [f for f in inside if f.endswith(WEIGHTS)]
        safe = [f for f in weights if f.endswith(".safetensors")]
        pool = safe or weights
        variants = sorted({_variant(f) for f in pool}, key=lambda v: (v is not None, v or ""))
        picked_variant = variants[0] if variants else None
        picked = [f for f in pool if _variant(f) == picked_variant]
        fmt = ".safetensors" if safe else None
        for name in inside:
            if name in weights:
                if name in picked:
                    chosen.append(name)
            elif ".index" in name.rsplit("/", 1)[-1]:
                # a shard index belongs with the weights it indexes
                same_format = fmt is None or ".safetensors.index" in name
                if same_format and _variant(name.replace(".index", "")) == picked_variant:
                    chosen.append(name)
            else:
                chosen.append(name)
    return chosen


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of whichever HTTP library this huggingface_hub uses (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _offline(repo_id: str, exc: BaseException | None = None) -> PullError:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    why = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return PullError(f"cannot reach the Hugging Face Hub at {endpoint}{why}, so {repo_id} cannot be downloaded "
                     "now. Check the network (or a proxy), then run the same command again: the files already "
                     "downloaded are kept and only the rest is fetched. Models already here: `uprez models list`")


def _gated(repo_id: str, logged_in: bool) -> PullError:
    url = f"https://huggingface.co/{repo_id}"
    if not logged_in:
        return PullError(f"{repo_id} is a gated model: its licence must be accepted before downloading. 1) open "
                         f"{url}, log in and accept the licence; 2) run `hf auth login` here (or set HF_TOKEN) "
                         f"with a token of that account; 3) run `uprez models pull {repo_id}` again")
    return PullError(f"{repo_id} is a gated model and your Hugging Face account has no access yet: open {url} "
                     "while logged in, read and accept the licence (some repos approve by hand, which can take a "
                     f"while), then run `uprez models pull {repo_id}` again")


def _hub_call(repo_id: str, call: Callable[[], Any], logged_in: bool) -> Any:
    """Run one Hub call, turning its errors into messages a person can act on."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return call()
    except GatedRepoError as exc:
        raise _gated(repo_id, logged_in) from exc
    except RepositoryNotFoundError as exc:
        hint = "" if logged_in else "; if it is private, log in with `hf auth login` first"
        raise PullError(f"there is no model {repo_id!r} on the Hugging Face Hub (check the spelling: "
                        f"organisation/name, as in the address huggingface.co/{repo_id}){hint}") from exc
    except RevisionNotFoundError as exc:
        raise PullError(f"{repo_id} has no such revision: {exc}") from exc
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise _offline(repo_id, exc) from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise _gated(repo_id, logged_in) from exc
        raise PullError(f"the Hugging Face Hub refused {repo_id} (HTTP {status}): {exc}") from exc
    except _network_errors() as exc:
        raise _offline(repo_id, exc) from exc


def _free_bytes(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_space(needed: int, folder: Path, free: Callable[[Path], int] = _free_bytes) -> None:
    """Refuse before downloading anything when `needed` bytes (plus a margin) do not fit where they go."""
    available = free(folder)
    if needed + MARGIN > available:
        raise PullError(f"not enough disk space: the download needs {format_bytes(needed)} (+{format_bytes(MARGIN)} "
                        f"to spare) and {folder} has {format_bytes(available)} free. Free some space, or point "
                        "the Hugging Face cache at a bigger disk (HF_HUB_CACHE=/big/disk/hf) and pull again")


def pull(repo_id: str, *, elsewhere: list[LocalModel] | None = None, cache: Path | None = None,
         revision: str | None = None, free: Callable[[Path], int] = _free_bytes, out: TextIO | None = None) -> Path:
    """Download `repo_id` (a diffusers repo) into the Hugging Face cache, unless a complete copy is already in the
    cache or among `elsewhere` (ComfyUI's and the user's model folders)."""
    out = out or sys.stderr
    if not REPO_ID.match(repo_id):
        raise InvalidInput(f"{repo_id!r} is not a Hugging Face repo id; write it as organisation/name, e.g. "
                           "black-forest-labs/FLUX.1-schnell (`uprez models recommend` lists a few)")
    cache = hf_cache_dir() if cache is None else cache
    local = find_local(repo_id, scan_hf_cache(cache) + (elsewhere or []))
    if local is not None and revision is None:
        print(f"{repo_id} is already here: {local.path} ({format_bytes(local.size)}); nothing to download", file=out)
        return local.path
    for namesake in same_name(repo_id, elsewhere or []):
        print(f"note: {namesake.path} has the same name but does not say it is {repo_id}, so it is downloaded "
              f"anyway; if that folder is the same model, `--model {namesake.path}` uses it instead (Ctrl-C now "
              "stops the download)", file=out)
    from huggingface_hub import HfApi, get_token, hf_hub_download, snapshot_download

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        raise PullError(f"offline mode is on (HF_HUB_OFFLINE is set), so {repo_id} cannot be downloaded; unset "
                        "HF_HUB_OFFLINE and run the command again. Models already here: `uprez models list`")
    logged_in = get_token() is not None
    info = _hub_call(repo_id, lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True), logged_in)
    if info.gated and not logged_in:
        raise _gated(repo_id, logged_in=False)
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    if "model_index.json" not in sizes:
        raise PullError(f"{repo_id} is not a diffusers model (it has no model_index.json); Uprez loads diffusers "
                        "repos, or a single .safetensors transformer file you download yourself (--model FILE)")
    index_path = _hub_call(repo_id, lambda: hf_hub_download(repo_id, "model_index.json", revision=info.sha,
                                                            cache_dir=cache), logged_in)
    wanted = select_files(sorted(sizes), json.loads(Path(index_path).read_text()))
    snapshot = repo_folder(cache, repo_id) / "snapshots" / str(info.sha)
    have = sum(sizes.get(f, 0) for f in wanted if (snapshot / f).is_file())
    total = sum(sizes.get(f, 0) for f in wanted)
    print(f"{repo_id}: {len(wanted)} files, {format_bytes(total)}"
          + (f" ({format_bytes(have)} already here)" if have else ""), file=out)
    check_space(total - have, cache, free)
    path = _hub_call(repo_id, lambda: snapshot_download(repo_id, revision=info.sha, cache_dir=cache,
                                                        allow_patterns=wanted), logged_in)
    print(f"installed {repo_id} at {path}; use it with `uprez serve --model {repo_id}` or "
          f"`uprez upscale --model {repo_id} ...`", file=out)
    return Path(path)
