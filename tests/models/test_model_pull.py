"""`uprez models pull` through the real huggingface_hub client, against a stand-in Hub serving real files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from cache_layouts import lay_out_as_comfyui
from hub import Repo, StandInHub

from engine.backends.loader import load_backend
from engine.models.pull import MARGIN, PullError, check_space, select_files

REPO = "test-org/tiny-flux"
GATED = "test-org/gated-flux"
SLOW = "test-org/slow-flux"
SLOW_FILE = "transformer/diffusion_pytorch_model.safetensors"


def _environ(isolated, hub_url: str, **env: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(isolated["home"]), "UPREZ_CONFIG_DIR": str(isolated["config"]),
            "HF_HOME": str(isolated["hf_home"]), "HF_HUB_CACHE": str(isolated["cache"]), "HF_ENDPOINT": hub_url,
            "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": os.pathsep.join(sys.path), **env}


def uprez(isolated, hub_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The `uprez` command as a user runs it, with only the test's own home, config and cache."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], env=_environ(isolated, hub_url, **env),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def hub(tiny_model):
    folder = tiny_model("flux-dev")
    repo = Repo.from_folder(folder)
    repo.files["flux1-dev.safetensors"] = b"\0" * 300_000  # the repo's single-file copy: never fetched
    repo.files["transformer/diffusion_pytorch_model.fp16.safetensors"] = b"\1" * 1000  # a variant: not fetched
    repo.files["text_encoder/pytorch_model.bin"] = b"\2" * 1000  # a duplicate in another format: not fetched
    repo.files["README.md"] = b"# tiny\n"
    # A file past huggingface_hub's 10 MB write chunk, whose first transfer the network drops at 11 MB.
    repo.files["transformer/notes.txt"] = b"n" * (12 * 2**20)
    repo.cut_once["transformer/notes.txt"] = 11 * 2**20
    slow = Repo.from_folder(folder)
    # Weights past huggingface_hub's 10 MiB write chunk (never loaded: what counts is that they arrive whole),
    # whose first transfer stalls at 11 MiB until hub.release.
    slow.files[SLOW_FILE] = b"s" * (12 * 2**20)
    slow.hold_once[SLOW_FILE] = 11 * 2**20
    gated = Repo.from_folder(folder, gated=True, granted=("hf_granted",))
    huge = Repo.from_folder(folder, declared_sizes={"transformer/diffusion_pytorch_model.safetensors": 10**16})
    server = StandInHub({REPO: repo, GATED: gated, "test-org/huge-flux": huge, SLOW: slow})
    yield server
    server.stop()


def test_pull_fetches_what_the_loader_needs_resumes_and_never_twice(hub, isolated, tiny_model):
    done = uprez(isolated, hub.url, "models", "pull", REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    fetched = sorted(set(hub.downloads()))
    assert fetched == sorted([p.relative_to(tiny_model("flux-dev")).as_posix()
                              for p in tiny_model("flux-dev").rglob("*") if p.is_file()] + ["transformer/notes.txt"])
    resumed = [r[2] for r in hub.requests if r[0] == "GET" and r[1].endswith("transformer/notes.txt")]
    assert resumed == ["", f"bytes={10 * 2**20}-"]  # picked up after the 10 MB already on disk
    listed = uprez(isolated, hub.url, "models", "list")
    assert f"{REPO}  " in listed.stdout and "hf-cache" in listed.stdout and "INCOMPLETE" not in listed.stdout
    snapshot = next((isolated["cache"] / "models--test-org--tiny-flux" / "snapshots").iterdir())
    assert load_backend(snapshot, device="cpu").family == "flux"  # the downloaded files are a working model
    hub.requests.clear()
    again = uprez(isolated, hub.url, "models", "pull", REPO)
    assert again.returncode == 0 and "already here" in again.stderr
    assert hub.requests == []  # not even a metadata call
    removed = uprez(isolated, hub.url, "models", "remove", REPO)
    assert removed.returncode == 0 and not (isolated["cache"] / "models--test-org--tiny-flux").exists()


def test_a_gated_repo_says_how_to_get_access(hub, isolated):
    anonymous = uprez(isolated, hub.url, "models", "pull", GATED)
    assert anonymous.returncode == 1
    assert "is a gated model" in anonymous.stderr and "hf auth login" in anonymous.stderr
    assert f"https://huggingface.co/{GATED}" in anonymous.stderr
    refused = uprez(isolated, hub.url, "models", "pull", GATED, HF_TOKEN="hf_not_granted")
    assert refused.returncode == 1 and "has no access yet" in refused.stderr, refused.stderr[-2000:]
    assert hub.downloads() == []
    granted = uprez(isolated, hub.url, "models", "pull", GATED, HF_TOKEN="hf_granted")
    assert granted.returncode == 0, granted.stderr[-2000:]


def test_no_space_is_refused_before_downloading(hub, isolated):
    done = uprez(isolated, hub.url, "models", "pull", "test-org/huge-flux")
    assert done.returncode == 1 and "not enough disk space" in done.stderr and "HF_HUB_CACHE" in done.stderr
    assert hub.downloads() == ["model_index.json"]  # read to know which files count; nothing else


def test_offline_and_unknown_repos_get_clear_messages(hub, isolated):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    offline = uprez(isolated, closed, "models", "pull", REPO)
    assert offline.returncode == 1 and "cannot reach the Hugging Face Hub" in offline.stderr
    assert "only the rest is fetched" in offline.stderr
    switched_off = uprez(isolated, hub.url, "models", "pull", REPO, HF_HUB_OFFLINE="1")
    assert switched_off.returncode == 1 and "offline mode is on" in switched_off.stderr
    missing = uprez(isolated, hub.url, "models", "pull", "test-org/no-such-model")
    assert missing.returncode == 1 and "there is no model 'test-org/no-such-model'" in missing.stderr
    bad = uprez(isolated, hub.url, "models", "pull", "not a repo")
    assert bad.returncode == 2 and "organisation/name" in bad.stderr
    assert hub.downloads() == []


def test_file_choice_for_a_repo_like_flux_dev():
    """FLUX.1-dev's repo: diffusers components plus a 24 GB single-file copy at the root, which is skipped."""
    files = ["model_index.json", "flux1-dev.safetensors", "ae.safetensors", "README.md", "LICENSE.md",
             "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
             "text_encoder_2/config.json", "text_encoder_2/model-00001-of-00002.safetensors",
             "text_encoder_2/model-00002-of-00002.safetensors", "text_encoder_2/model.safetensors.index.json",
             "tokenizer/vocab.json", "tokenizer_2/spiece.model", "transformer/config.json",
             "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
             "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
             "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
             "transformer/diffusion_pytorch_model.safetensors.index.json",
             "transformer/diffusion_pytorch_model.fp16.safetensors",
             "transformer/diffusion_pytorch_model.bin", "transformer/diffusion_pytorch_model.bin.index.json",
             "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
             "vae/diffusion_pytorch_model.fp16.safetensors", "text_encoder/flax_model.msgpack"]
    index = {"_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
             "image_encoder": [None, None]}
    chosen = select_files(files, index)
    assert "flux1-dev.safetensors" not in chosen and "ae.safetensors" not in chosen
    assert not [f for f in chosen if ".fp16." in f or f.endswith((".bin", ".msgpack")) or ".bin.index" in f]
    assert {"transformer/diffusion_pytorch_model.safetensors.index.json",
            "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
            "text_encoder_2/model.safetensors.index.json", "tokenizer_2/spiece.model"} <= set(chosen)
    only_fp16 = select_files(["model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors"],
                             {"vae": ["diffusers", "AutoencoderKL"]})
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in only_fp16  # a variant when nothing else exists


def test_space_check_counts_a_margin(tmp_path):
    check_space(10 * 2**30, tmp_path, free=lambda _p: 10 * 2**30 + MARGIN)
    with pytest.raises(PullError, match=r"needs 10\.0 GiB .* has 12\.0 GiB free"):
        check_space(10 * 2**30, tmp_path, free=lambda _p: 10 * 2**30 + MARGIN - 1)


def test_a_pull_cut_off_after_a_config_file_resumes(hub, isolated):
    """A download stopped after transformer/config.json and before its weights is not "already here"."""
    assert uprez(isolated, hub.url, "models", "pull", REPO).returncode == 0
    snapshot = next((isolated["cache"] / "models--test-org--tiny-flux" / "snapshots").iterdir())
    weights = snapshot / "transformer" / "diffusion_pytorch_model.safetensors"
    blob = weights.resolve()
    weights.unlink()
    blob.unlink()
    hub.requests.clear()
    again = uprez(isolated, hub.url, "models", "pull", REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to download" not in again.stderr
    assert hub.downloads() == ["transformer/diffusion_pytorch_model.safetensors"]
    assert load_backend(snapshot, device="cpu").family == "flux"


def test_a_folder_that_only_shares_the_name_does_not_stop_a_pull(hub, isolated, tiny_model, tmp_path):
    """A ComfyUI folder called tiny-flux may be any model of that name: it is pointed out, and the pull goes on."""
    comfyui = tmp_path / "ComfyUI"
    folder = lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "tiny-flux").resolve()
    done = uprez(isolated, hub.url, "models", "pull", REPO, UPREZ_COMFYUI_DIRS=str(comfyui))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nothing to download" not in done.stderr
    assert f"note: {folder} has the same name" in done.stderr and f"`--model {folder}` uses it" in done.stderr
    assert "transformer/diffusion_pytorch_model.safetensors" in hub.downloads()


def _as_from_a_terminal() -> None:
    """Ctrl-C as a shell's child gets it: SIGINT unblocked and handled by default. In two full runs of stop 16
    the pull ignored the signal (alone and after tests/cluster it did not); a blocked or ignored SIGINT is
    inherited from the test process, so the child starts without either."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_a_pull_keeps_what_is_done_and_the_next_pull_fetches_the_rest(hub, isolated):
    """A real SIGINT while a file is half-way: the command ends at once (not when the files in flight are done),
    the finished files stay, the half file leaves no litter, and the next pull fetches only what is missing."""
    repo = isolated["cache"] / "models--test-org--slow-flux"
    # The client must wait out the stall: at huggingface_hub's default read timeout (10 s) it retries with a
    # range request, which is never held, and the file can complete just as the signal arrives (exit 0 once
    # in a full run of stop 16).
    slow_network = _environ(isolated, hub.url, HF_HUB_DOWNLOAD_TIMEOUT="300")
    with subprocess.Popen([sys.executable, "-m", "engine.cli", "models", "pull", SLOW], env=slow_network,
                          preexec_fn=_as_from_a_terminal,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as pulling:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size >= 10 * 2**20 for p in (repo / "blobs").glob("*.incomplete")):
            assert pulling.poll() is None and time.monotonic() < deadline, "the download never got under way"
            time.sleep(0.1)
        pulling.send_signal(signal.SIGINT)
        try:
            _, err = pulling.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pulling.kill()
            pytest.fail("the pull did not stop on Ctrl-C while a file was still downloading")
    assert pulling.returncode == 130
    assert (f"interrupted; the partial download is kept (the files finished so far) and `uprez models pull {SLOW}` "
            "fetches the rest") in err
    assert not list((repo / "blobs").glob("*.incomplete"))
    snapshot = next((repo / "snapshots").iterdir())
    kept = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}
    assert "model_index.json" in kept and SLOW_FILE not in kept
    listed = uprez(isolated, hub.url, "models", "list")
    assert f"{SLOW}  " in listed.stdout and "INCOMPLETE, missing transformer" in listed.stdout
    hub.release.set()
    hub.requests.clear()
    again = uprez(isolated, hub.url, "models", "pull", SLOW)
    assert again.returncode == 0, again.stderr[-3000:]
    assert SLOW_FILE in hub.downloads() and not kept & set(hub.downloads())
    assert (snapshot / SLOW_FILE).stat().st_size == 12 * 2**20
    assert "INCOMPLETE" not in uprez(isolated, hub.url, "models", "list").stdout
