"""GPU acceptance: real-size FLUX.1-dev, FLUX.2 Klein 4B and Z-Image with random weights, per format and memory mode.

    python bench/gpu.py [--budget 420] [--only FLUX.2-klein-4B]      # on a CUDA machine
    python bench/gpu.py --dry-run                                    # anywhere: tiny sizes on the CPU

Each row builds the model's real architecture (engine.models.architectures) directly on the device with its
default random initialisation (no download: the weights' values do not change time or memory), stores the
transformer as bf16, fp8 (diffusers' layerwise casting: fp8 in memory, computed in bf16) or GGUF Q8_0 / Q4_0
(diffusers' GGUFLinear over random blocks in the real GGML layout, as a GGUF file would load; needs the `gguf`
package), installs the memory mode through diffusers (engine.memory_modes.apply_mode), and runs our defaults
(preset balanced, the model's steps and tiles) on a 1024² input to 2048² and to 4096². Text encoding is not run:
the conditioning is random tensors of the real shapes (a cached prompt costs nothing, engine.prompt_cache).

Prints a markdown table: wall seconds, model seconds (transformer and VAE calls, synchronised), peak VRAM
(torch.cuda.max_memory_allocated during the job) and the meta-device plan's figure for the same mode. Rows run in
priority order and stop when `--budget` seconds have passed, so one run stays under 8 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

MODELS = {  # name -> (tiny fixture family, repo id of the real architecture)
    "FLUX.1-dev": ("flux-dev", "black-forest-labs/FLUX.1-dev"),
    "FLUX.2-klein-4B": ("flux2-klein", "black-forest-labs/FLUX.2-klein-4B"),
    "Z-Image-Turbo": ("z-image", "Tongyi-MAI/Z-Image-Turbo"),
}
GGUF_TYPES = {"Q8_0": (32, 34), "Q4_0": (32, 18)}  # weights per block, bytes per block (GGML)


@dataclass(frozen=True)
class Row:
    model: str
    fmt: str
    mode: str
    scale: int


def rows_in_priority() -> list[Row]:
    """Most telling first: every model's baseline, then formats, then modes, then 4096²; the slow ones last."""
    rows: list[Row] = []
    for model in MODELS:
        rows.append(Row(model, "bf16", "gpu", 2))
    for model in MODELS:
        for fmt in ("fp8", "Q8_0", "Q4_0"):
            rows.append(Row(model, fmt, "gpu", 2))
    for model in MODELS:
        for mode in ("model-offload", "group-offload"):
            rows.append(Row(model, "bf16", mode, 2))
    for model in MODELS:
        rows.append(Row(model, "bf16", "gpu", 4))
        rows.append(Row(model, "Q8_0", "group-offload", 2))
    for model in ("FLUX.2-klein-4B", "Z-Image-Turbo", "FLUX.1-dev"):
        rows.append(Row(model, "bf16", "sequential", 2))
    return rows


# ---- building ---------------------------------------------------------------------------------------------


def _parts(model: str, dry_run: bool) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(tiny pipeline: class, scheduler and extra config; transformer config; VAE config) for `model`."""
    from engine.models.architectures import ARCHITECTURES
    from engine.testing.tiny_models import build_tiny_pipeline

    family, repo_id = MODELS[model]
    tiny = build_tiny_pipeline(family)
    if dry_run:
        return tiny, dict(tiny.transformer.config), dict(tiny.vae.config)
    parts = {p.name: p for p in ARCHITECTURES[repo_id].parts}
    import diffusers

    vae_config = dict(getattr(diffusers, parts["vae"].class_name).from_config(parts["vae"].config).config) \
        if not parts["vae"].config else parts["vae"].config
    return tiny, parts["transformer"].config, vae_config


def _build(cls: type, config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The module with its default random initialisation, made directly on `device` in `dtype`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            module = cls.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return module.to(dtype).eval()


def _gguf_linears(transformer: torch.nn.Module, quant: str, compute_dtype: torch.dtype) -> None:
    """Swap every Linear whose rows split into GGML blocks for diffusers' GGUFLinear over random blocks."""
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter
    from gguf import GGMLQuantizationType

    block, size = GGUF_TYPES[quant]
    kind = getattr(GGMLQuantizationType, quant)
    for parent in list(transformer.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child.in_features % block:
                continue
            device = child.weight.device
            blocks = torch.randint(0, 256, (child.out_features, child.in_features // block, size), dtype=torch.uint8,
                                   device=device)
            # fp16 block scale first: sized so the weights' spread is that of the default initialisation.
            spread = 73.0 if quant == "Q8_0" else 4.6  # std of the int8 / 4-bit codes
            scale = torch.full(blocks.shape[:2], child.weight.float().std().item() / spread, dtype=torch.float16,
                               device=device)
            blocks[..., :2] = scale.unsqueeze(-1).view(torch.uint8).view(*blocks.shape[:2], 2)
            with torch.device("meta"):
                layer = GGUFLinear(child.in_features, child.out_features, child.bias is not None,
                                   compute_dtype=compute_dtype)
            layer.weight = GGUFParameter(blocks.reshape(child.out_features, -1), quant_type=kind)
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.detach(), requires_grad=False)
            setattr(parent, name, layer)


def build_backend(model: str, fmt: str, mode: str, device: torch.device, dry_run: bool) -> Any:
    """A backend of `model` with random weights, its transformer in `fmt`, in memory mode `mode`."""
    import diffusers

    from engine.backends.registry import family_for_pipeline
    from engine.memory_modes import apply_mode

    dtype = torch.bfloat16
    tiny, t_config, v_config = _parts(model, dry_run)
    build_on = device if mode == "gpu" or device.type == "cpu" else device  # fast init on the GPU, then moved
    transformer = _build(type(tiny.transformer), t_config, build_on, dtype)
    vae = _build(getattr(diffusers, type(tiny.vae).__name__), v_config, build_on, dtype)
    if hasattr(vae, "bn"):  # FLUX.2's latent statistics: identity, as a fresh BatchNorm has
        vae.bn.running_mean.zero_()
        vae.bn.running_var.fill_(1.0)
    if fmt == "fp8":
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    elif fmt in GGUF_TYPES:
        _gguf_linears(transformer, fmt, dtype)
    if mode != "gpu":
        transformer.to("cpu")
        vae.to("cpu")
    components = {name: (None if name.startswith(("text_encoder", "tokenizer")) else value)
                  for name, value in tiny.components.items()}
    components.update(transformer=transformer, vae=vae)
    extra = {"is_distilled": True} if "is_distilled" in tiny.config else {}
    pipe = type(tiny)(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    family = family_for_pipeline(type(tiny).__name__, model)
    backend = family.backend_class()(pipe, source=model, device=device, dtype=dtype)
    apply_mode(pipe, mode, device)
    backend.memory_mode = mode
    return backend


def random_conditioning(backend: Any) -> Any:
    """Text conditioning of the real shapes with random values (the text encoders are not part of this bench)."""
    from engine.backends.base import Conditioning

    config = backend.pipe.transformer.config
    device, dtype = backend.device, torch.bfloat16
    family = backend.family
    if family == "flux":
        text = {"encoder_hidden_states": torch.randn(1, 512, config.joint_attention_dim, device=device, dtype=dtype),
                "pooled_projections": torch.randn(1, config.pooled_projection_dim, device=device, dtype=dtype),
                "txt_ids": torch.zeros(512, 3, device=device, dtype=dtype)}
    elif family == "flux2":
        embeds = torch.randn(1, 512, config.joint_attention_dim, device=device, dtype=dtype)
        text = {"encoder_hidden_states": embeds, "txt_ids": type(backend.pipe)._prepare_text_ids(embeds).to(device)}
    elif family == "z-image":
        text = {"cap_feats": torch.randn(64, config.cap_feat_dim, device=device, dtype=dtype)}
    else:
        raise ValueError(f"no random conditioning for {family}")
    return Conditioning(positive=text, distilled_guidance=backend._guidance_value(None))


# ---- running ----------------------------------------------------------------------------------------------


def _timed(calls: dict[str, float], fn: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            calls["model_s"] += time.perf_counter() - start
    return call


def run_row(row: Row, device: torch.device, side: int, dry_run: bool) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from engine import upscale
    from engine.memory_plan import plan_model

    backend = build_backend(row.model, row.fmt, row.mode, device, dry_run)
    cond = random_conditioning(backend)
    backend.encode_prompt = lambda *args, **kwargs: cond  # the conditioning above instead of text encoders
    calls = {"model_s": 0.0}
    for name in ("velocity", "encode", "decode"):
        setattr(backend, name, _timed(calls, getattr(backend, name), device))
    with Image.open(ROOT / "engine" / "data" / "sample.jpg") as photo:
        image = np.asarray(photo.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = upscale(image, backend=backend, scale=row.scale, seed=0)
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    plan_fmt = "Q4_0" if row.fmt == "Q4_0" else row.fmt
    plan = None if dry_run else plan_model(MODELS[row.model][1], weight_format=plan_fmt)
    del backend
    return {"wall_s": wall, "model_s": calls["model_s"], "peak": peak, "out": out.shape,
            "plan": None if plan is None else plan.peak(row.mode)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, 64-pixel input: proves the "
                        "code path anywhere, measures nothing")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no new row starts")
    parser.add_argument("--only", help="run only this model (one of: " + ", ".join(MODELS) + ")")
    args = parser.parse_args(argv)
    from engine.backends.loader import quiet_libraries

    quiet_libraries()
    if args.dry_run:
        device, side = torch.device("cpu"), 64
        torch.set_num_threads(2)
    elif torch.cuda.is_available():
        device, side = torch.device("cuda"), 1024
    else:
        print("bench/gpu.py needs a CUDA GPU; use --dry-run to check the code path on this machine", file=sys.stderr)
        return 1
    name = "CPU (dry run, tiny models)" if args.dry_run else torch.cuda.get_device_name(device)
    print(f"### {name}, torch {torch.__version__}\n")
    print(f"| model | transformer | memory mode | {side}² → | wall s | model s | peak VRAM GiB | plan GiB |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    began = time.perf_counter()
    failures = 0
    for row in rows_in_priority():
        if args.only and row.model != args.only:
            continue
        target = f"{side * row.scale}²"
        if time.perf_counter() - began > args.budget:
            print(f"| {row.model} | {row.fmt} | {row.mode} | {target} | skipped: over the {args.budget:.0f} s budget "
                  "| | | |", flush=True)
            continue
        try:
            result = run_row(row, device, side, args.dry_run)
        except Exception as exc:  # one broken combination must not hide the others' figures
            failures += 1
            message = f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")[:160]
            print(f"| {row.model} | {row.fmt} | {row.mode} | {target} | failed: {message} | | | |", flush=True)
            traceback.print_exc(file=sys.stderr)
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        peak = "n/a" if result["peak"] is None else f"{result['peak'] / 2**30:.1f}"
        plan = "" if result["plan"] is None else f"{result['plan'] / 2**30:.1f}"
        print(f"| {row.model} | {row.fmt} | {row.mode} | {target} | {result['wall_s']:.1f} | {result['model_s']:.1f} "
              f"| {peak} | {plan} |", flush=True)
    print(f"\n{time.perf_counter() - began:.0f} s in all; {failures} combination(s) failed (stderr has why)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
