"""Text encoders only when needed: encoded prompts are cached on disk, and a job whose prompt is cached never
reads the text-encoder files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.backends.loader import load_backend
from engine.prompt_cache import PromptCache


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def _make_unreadable(folder: Path) -> list[Path]:
    """chmod 000 every text-encoder and tokenizer file. Root reads such files anyway, so their bytes are also
    overwritten with zeros (same size and modification time, as a file the cache key cannot tell apart): any
    attempt to load them fails loudly either way."""
    spoiled = []
    for part in sorted(folder.iterdir()):
        if not part.name.startswith(("text_encoder", "tokenizer")):
            continue
        for path in sorted(p for p in part.rglob("*") if p.is_file()):
            stat = path.stat()
            path.write_bytes(bytes(stat.st_size))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            path.chmod(0)
            spoiled.append(path)
    return spoiled


@pytest.mark.parametrize(("family", "options"), [
    ("flux-dev", ["--prompt", "a photo of a cat"]),
    ("sd3", ["--prompt", "a photo of a cat", "--negative-prompt", "low quality", "--cfg-scale", "3"]),
])
def test_second_job_with_the_same_prompt_runs_without_the_text_encoder_files(family, options, tiny_model,
                                                                             sample_png, tmp_path):
    folder = shutil.copytree(tiny_model(family), tmp_path / "model")
    env = {"UPREZ_CACHE_DIR": str(tmp_path / "cache")}
    job = ["upscale", sample_png, "--model", folder, "--scale", "2", "--seed", "5", "-q", *options]
    first = _cli(*job, "-o", tmp_path / "first.png", env=env)
    assert first.returncode == 0, first.stderr

    assert len(_make_unreadable(folder)) >= 4  # weights, configs and tokenizer files of every encoder
    second = _cli(*job, "-o", tmp_path / "second.png", env=env)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "second.png").read_bytes() == (tmp_path / "first.png").read_bytes()

    # The files really are out of reach: a prompt the cache has not seen cannot be encoded.
    other = [*job, "-o", tmp_path / "third.png"]
    other[other.index("a photo of a cat")] = "a portrait in sharp focus"
    third = _cli(*other, env=env)
    assert third.returncode != 0
    assert not (tmp_path / "third.png").exists()


def test_text_encoders_load_for_new_prompts_only_and_are_freed(tiny_model, tmp_path):
    backend = load_backend(tiny_model("z-image"), device="cpu")
    backend.prompt_cache = PromptCache(tmp_path / "cache")
    encoders = backend.text_encoders
    assert encoders is not None and backend.pipe.text_encoder is None  # the model loads without them

    empty = backend.encode_prompt("")
    assert encoders.loads == 1 and backend.pipe.text_encoder is None  # loaded, used and freed again
    again = backend.encode_prompt("")
    assert encoders.loads == 1  # the empty prompt after its first use costs nothing
    torch.testing.assert_close(again.positive["cap_feats"], empty.positive["cap_feats"], rtol=0, atol=0)

    guided = backend.encode_prompt("a cat", "blurry", cfg_scale=3.0)  # two new prompts, one load
    assert encoders.loads == 2 and guided.negative is not None

    fresh = load_backend(tiny_model("z-image"), device="cpu")  # another process: only the disk cache is shared
    fresh.prompt_cache = PromptCache(tmp_path / "cache")
    cached = fresh.encode_prompt("a cat", "blurry", cfg_scale=3.0)
    assert fresh.text_encoders.loads == 0
    for ours, theirs in [(cached.positive, guided.positive), (cached.negative, guided.negative)]:
        torch.testing.assert_close(ours["cap_feats"], theirs["cap_feats"], rtol=0, atol=0)


def test_cache_key_changes_with_the_encoder_files(tiny_model, tmp_path):
    folder = shutil.copytree(tiny_model("flux-schnell"), tmp_path / "model")
    backend = load_backend(folder, device="cpu")
    before = backend.text_encoders.identity
    config = folder / "text_encoder_2" / "config.json"
    config.write_text(config.read_text() + " ")
    assert load_backend(folder, device="cpu").text_encoders.identity != before


def test_keep_leaves_the_encoders_attached(tiny_model, tmp_path):
    backend = load_backend(tiny_model("flux-schnell"), device="cpu")
    backend.prompt_cache = PromptCache(tmp_path / "cache")
    backend.text_encoders.keep = True  # what the memory plan sets when everything fits at once
    backend.encode_prompt("a cat")
    assert backend.text_encoders.attached and backend.text_encoders.loads == 1
    backend.encode_prompt("a dog")
    assert backend.text_encoders.loads == 1
