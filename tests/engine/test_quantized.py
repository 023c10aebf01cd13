"""Quantized transformer files (GGUF, fp8) through the user's path: `uprez upscale --model FILE --base DIR`.

The files are written from the tiny models with the `gguf` package's own quantizers (Q8_0, Q4_0, ...) and as
ComfyUI's fp8 checkpoints are (linear weights in float8, the rest bf16); Z-Image and FLUX.2 with their original
key names (diffusers' converters for them work at any width), FLUX.1 with diffusers' (its converter assumes
the real 3072 width), SD3, Qwen-Image and Chroma with diffusers' too. Outputs are compared with the full-precision
folder's on the same seed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.imagefile import read_image
from engine.testing.metrics import psnr
from engine.testing.quantized_files import COMFY_PREFIX, save_fp8, save_gguf

# family -> (key names written, GGUF architecture as the public conversions name it, key prefix)
LAYOUTS = {
    "flux-dev": ("diffusers", "flux", ""),
    "flux2-klein": ("flux2-original", "flux2", ""),
    "z-image": ("z-image-original", "lumina2", COMFY_PREFIX),  # ComfyUI's whole-checkpoint prefix too
    "sd3": ("diffusers", "sd3", ""),
    "qwen-image": ("diffusers", "qwen_image", ""),  # Qwen-Image's published names are diffusers' own
    "chroma": ("diffusers", "flux", ""),
}
# The issue's floors. Plain Lanczos scores about 8 dB against these tiny models' outputs (checked below), so
# a file that silently fell back to no model, or to the wrong weights, fails them.
FLOORS = {"Q8_0": 35.0, "Q4_0": 25.0, "fp8": 35.0}


def run(*args: object) -> int:
    return main(["upscale", *map(str, args)])


def write_file(fmt: str, family: str, folder, out_dir):
    names, arch, prefix = LAYOUTS[family]
    if fmt == "fp8":
        return save_fp8(folder, out_dir / f"{family}-fp8.safetensors", names=names, prefix=prefix)
    return save_gguf(folder, out_dir / f"{family}-{fmt}.gguf", fmt, names=names, arch=arch, prefix=prefix)


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    """`reference(family) -> array`: the full-precision folder's output through the same command line."""
    done: dict[str, np.ndarray] = {}
    folder = tmp_path_factory.mktemp("reference")

    def get(family: str, sample_png) -> np.ndarray:
        if family not in done:
            out = folder / f"{family}.png"
            assert run(sample_png, "-o", out, "--model", tiny_model(family), "-q") == 0
            done[family] = read_image(out)
        return done[family]

    return get


@pytest.fixture(scope="module")
def engine(serve_process, tiny_model):
    """The real `uprez serve`, started as users start it. It is given no --base: it pairs each job's file with a
    model of its family on disk, here the tiny models' folder (UPREZ_MODEL_DIRS)."""
    from plugin.uprez_client import Client
    from plugin.uprez_client.discovery import read_token

    root = tiny_model("flux-dev").parent
    for family in LAYOUTS:
        tiny_model(family)  # built before the server looks for bases
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UPREZ_MODEL_DIRS", str(root))
        server = serve_process("--model", "builtin")
    return Client(server.url, read_token({"UPREZ_CONFIG_DIR": str(server.config_dir)}))


@pytest.mark.parametrize("fmt", list(FLOORS))
@pytest.mark.parametrize("family", list(LAYOUTS))
def test_quantized_file_upscales_close_to_full_precision(family, fmt, tiny_model, reference, engine, sample_png,
                                                         tmp_path, capsys):
    """`uprez upscale --model FILE --base DIR` against the full-precision model; a job on the real server naming
    the same file gives the same pixels."""
    folder = tiny_model(family)
    checkpoint = write_file(fmt, family, folder, tmp_path)
    out = tmp_path / "out.png"
    assert run(sample_png, "-o", out, "--model", checkpoint, "--base", folder, "-q") == 0, capsys.readouterr().err
    job = engine.submit_file(sample_png, model=str(checkpoint), scale=2, seed=0)
    engine.wait(job)
    (tmp_path / "server.png").write_bytes(engine.result(job)[0])
    assert np.array_equal(read_image(tmp_path / "server.png"), read_image(out))
    full = reference(family, sample_png)
    got = read_image(out)
    with Image.open(sample_png) as image:
        lanczos = np.asarray(image.convert("RGB").resize(got.shape[1::-1], Image.Resampling.LANCZOS))
    value, plain = psnr(got, full), psnr(lanczos, full)
    with capsys.disabled():
        print(f"\n{family} {fmt}: {value:.2f} dB against full precision (plain Lanczos: {plain:.2f} dB)")
    assert value >= FLOORS[fmt]
    assert plain < FLOORS["Q4_0"]  # the model changes the picture far more than quantization does
    assert value < float("inf")  # the quantized weights really ran (identical bytes would mean they did not)


def test_gguf_weights_stay_quantized_and_fp8_weights_stay_fp8_in_memory(tiny_model, tmp_path):
    """After a whole upscale: GGUF layers still hold their blocks, fp8 layers their float8 weights."""
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from engine import upscale
    from engine.backends.loader import load_backend

    folder = tiny_model("z-image")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    gguf = load_backend(write_file("Q8_0", "z-image", folder, tmp_path), device="cpu", base=str(folder))
    upscale(image, backend=gguf)
    quantized = [p for p in gguf.pipe.transformer.parameters() if isinstance(p, GGUFParameter)]
    assert len(quantized) >= 10 and all(p.dtype == torch.uint8 for p in quantized)
    for storage in (torch.float8_e4m3fn, torch.float8_e5m2):
        checkpoint = save_fp8(folder, tmp_path / f"{storage}.safetensors", storage, names="z-image-original")
        fp8 = load_backend(checkpoint, device="cpu", base=str(folder))
        upscale(image, backend=fp8)
        weights = [m.weight for m in fp8.pipe.transformer.modules() if isinstance(m, torch.nn.Linear)]
        kept = [w for w in weights if w.dtype == storage]
        # Every linear layer but the embedders diffusers marks precision-sensitive (t_embedder, cap_embedder).
        assert len(kept) == len(weights) - 3
        assert fp8.pipe.transformer.dtype == torch.float32  # what the layers compute in on the CPU
    # bfloat16 compute, as on CUDA: the same fp8 weights, cast to bf16 inside each layer.
    bf16 = load_backend(checkpoint, device="cpu", dtype="bfloat16", base=str(folder))
    upscale(image, backend=bf16)
    weights = [m.weight.dtype for m in bf16.pipe.transformer.modules() if isinstance(m, torch.nn.Linear)]
    assert weights.count(torch.float8_e5m2) == len(weights) - 3 and bf16.pipe.transformer.dtype == torch.bfloat16


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K"])
def test_k_quant_tensors_load_as_the_gguf_package_decodes_them(qtype, tiny_model, tmp_path):
    """The gguf package writes no K-quants, so their blocks are random bytes with sane scales; what diffusers
    dequantizes through our loader must equal gguf's own reference decoder, and the model must run on them."""
    import gguf
    from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor
    from safetensors.torch import load_file

    from engine import upscale
    from engine.backends.loader import load_backend

    folder = tiny_model("z-image")
    kind = gguf.GGMLQuantizationType[qtype]
    block, size = gguf.GGML_QUANT_SIZES[kind]
    scale_at = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}[qtype]  # offsets of each block's fp16 scales
    state = load_file(next((folder / "transformer").glob("*.safetensors")))
    rng = np.random.default_rng(0)
    path = tmp_path / "k.gguf"
    writer = gguf.GGUFWriter(str(path), arch="lumina2")
    expected = {}
    for key, value in state.items():
        array = value.float().numpy()
        # t_embedder's two linears are the only ones 256 wide at this size (K-quant blocks are 256 values).
        if key.startswith("t_embedder.mlp.") and key.endswith("weight"):
            rows = rng.integers(0, 256, (array.shape[0], array.shape[1] // block * size), dtype=np.uint8)
            blocks = rows.reshape(-1, size)
            for at in scale_at:
                blocks[:, at:at + 2] = np.frombuffer(np.float16(0.002).tobytes(), np.uint8)
            writer.add_tensor(key, rows, raw_shape=rows.shape, raw_dtype=kind)
            expected[key] = torch.from_numpy(gguf.quants.dequantize(rows, kind).copy())
        else:
            writer.add_tensor(key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    backend = load_backend(path, device="cpu", base=str(folder))
    params = dict(backend.pipe.transformer.named_parameters())
    for key, want in expected.items():
        assert params[key].quant_type == kind
        # diffusers decodes in float16, the gguf package in float32: equal to float16's rounding.
        torch.testing.assert_close(dequantize_gguf_tensor(params[key]).float(), want, rtol=2e-3, atol=2e-3)
    result = upscale(np.full((32, 32, 3), 128, np.uint8), backend=backend)
    assert result.shape == (64, 64, 3)


# -- bad input: one line, a non-zero exit, no output ------------------------------------------------------------
def _llama_gguf(tmp_path, _folder):
    import gguf

    path = tmp_path / "llama-3-8b.Q8_0.gguf"
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _mxfp4_gguf(tmp_path, folder):
    return save_gguf(folder, tmp_path / "flux-mxfp4.gguf", "MXFP4")


def _forge_nf4(tmp_path, _folder):
    from safetensors.torch import save_file

    path = tmp_path / "flux1-dev-bnb-nf4.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(8, dtype=torch.uint8),
               "double_blocks.0.img_attn.qkv.weight.quant_state.bitsandbytes__nf4": torch.zeros(4, dtype=torch.uint8),
               "double_blocks.0.img_attn.qkv.weight.absmax": torch.zeros(2)}, str(path))
    return path


def _truncated_gguf(tmp_path, folder):
    whole = save_gguf(folder, tmp_path / "whole.gguf", "Q8_0")
    cut = tmp_path / "flux1-dev-Q8_0.gguf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    return cut


def _scaled_fp8(tmp_path, folder):
    from safetensors.torch import load_file, save_file

    path = save_fp8(folder, tmp_path / "flux1-dev-fp8-scaled.safetensors")
    state = load_file(path)
    state["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)  # ComfyUI's marker, with per-tensor scales
    state["transformer_blocks.0.attn.to_q.scale_weight"] = torch.ones(1)
    save_file(state, str(path))
    return path


def _bnb_folder(tmp_path, folder):
    import shutil

    copy = tmp_path / "flux-nf4"
    shutil.copytree(folder, copy)
    config = copy / "transformer" / "config.json"
    data = json.loads(config.read_text())
    data["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    config.write_text(json.dumps(data))
    return copy


BAD = {
    "GGUF of an unknown architecture": (_llama_gguf, [], "GGUF of architecture 'llama'"),
    "quantization type diffusers cannot load": (_mxfp4_gguf, ["--base", "{folder}"],
                                                "MXFP4 tensors, which diffusers cannot load"),
    "transformer with no base on disk": (lambda t, f: write_file("Q8_0", "flux-dev", f, t), [],
                                         "none is on this machine"),
    "--base that is not on this machine": (lambda t, f: write_file("fp8", "flux-dev", f, t),
                                           ["--base", "someone/not-downloaded"], "not (completely) in the Hugging"),
    "bitsandbytes without CUDA": (lambda t, f: f, ["--quantize", "nf4"], "needs a CUDA GPU"),
    "bitsandbytes folder without CUDA": (_bnb_folder, [], "bitsandbytes (nf4/int8) weights, which need a CUDA"),
    "Forge nf4 single file": (_forge_nf4, [], "bitsandbytes (nf4/int8) checkpoint"),
    "truncated GGUF": (_truncated_gguf, ["--base", "{folder}"], "is not a readable GGUF file"),
    "scaled fp8": (_scaled_fp8, ["--base", "{folder}"], "is a *scaled* fp8 checkpoint"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_quantized_input_gets_one_line_and_no_output(case, tiny_model, sample_png, tmp_path, monkeypatch, capsys):
    # An empty Hugging Face cache and config folder: nothing to pair with but what the case gives.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("UPREZ_COMFYUI_DIRS", "UPREZ_MODEL_DIRS"):
        monkeypatch.delenv(name, raising=False)
    make, extra, message = BAD[case]
    folder = tiny_model("flux-dev")
    model = make(tmp_path, folder)
    out = tmp_path / "out.png"
    capsys.readouterr()  # building the tiny model and the file may print; only the command's output counts
    code = run(sample_png, "-o", out, "--model", model, "--device", "cpu", "-q",
               *[arg.format(folder=folder) for arg in extra])
    err = capsys.readouterr().err
    with capsys.disabled():
        print(f"\n{case}: exit {code}: {err.strip()}")
    assert code != 0
    assert message in err
    assert err.strip().count("\n") == 0, err  # one line
    assert "Traceback" not in err
    assert not out.exists()
    assert not (tmp_path / "hub").exists() or not any((tmp_path / "hub").iterdir())  # nothing was downloaded


def test_serve_with_bitsandbytes_but_no_cuda_refuses_at_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path / "config"))
    code = main(["serve", "--port", "0", "--device", "cpu", "--quantize", "int8"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == ("uprez: --quantize int8 uses bitsandbytes, which needs a CUDA GPU (the device here is cpu); "
                   "use a GGUF or fp8 file instead, which run anywhere")
    assert not (tmp_path / "config" / "engine.json").exists()  # no engine was started


@pytest.mark.parametrize("family", list(LAYOUTS))
def test_fp8_file_loaded_as_fp8_equals_diffusers_plain_load(family, tiny_model, tmp_path):
    """The low-peak fp8 load (the file loaded as fp8, the rest put back) holds exactly what diffusers' plain load
    in the compute dtype holds: every parameter and buffer, with the fp8 layers' weights still in fp8."""
    import diffusers

    from engine.backends.fp8 import load_fp8
    from engine.backends.quantized import read_checkpoint

    folder = tiny_model(family)
    names, _, prefix = LAYOUTS[family]
    checkpoint = read_checkpoint(save_fp8(folder, tmp_path / "t.safetensors", names=names, prefix=prefix))
    cls = getattr(diffusers, json.loads((folder / "transformer" / "config.json").read_text())["_class_name"])
    kwargs = {"config": str(folder), "subfolder": "transformer", "local_files_only": True}
    from safetensors.torch import load_file

    def source():  # as the loader hands a file over: its path, or its keys without ComfyUI's prefix
        if not prefix:
            return str(checkpoint.path)
        return {k.removeprefix(prefix): v for k, v in load_file(checkpoint.path).items()}

    low = load_fp8(cls, source(), checkpoint.storage, torch.float32, kwargs)
    plain = cls.from_single_file(source(), dtype=torch.float32, **kwargs)
    ours, theirs = low.state_dict(), plain.state_dict()
    assert ours.keys() == theirs.keys()
    fp8 = [k for k, v in ours.items() if v.dtype == torch.float8_e4m3fn]
    assert len(fp8) >= 5
    if family == "flux-dev":  # AdaLayerNorm linears (a quarter of FLUX) stay fp8 as well
        assert {"transformer_blocks.0.norm1.linear.weight", "norm_out.linear.weight"} <= set(fp8)
    for key, value in ours.items():
        assert theirs[key].dtype == torch.float32
        assert torch.equal(value.float(), theirs[key]), key
    assert all(b.dtype == torch.float32 for b in low.buffers() if b.is_floating_point())
