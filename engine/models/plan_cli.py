"""`uprez models plan MODEL` and the VRAM-per-mode table of `uprez models recommend`, from meta-device plans."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.settings import MEMORY_MODES

PLAN_FORMATS = ("bf16", "fp8", "Q8_0", "Q4_K")  # what recommend shows: full precision and the common files


def add_plan_parser(actions: argparse._SubParsersAction) -> None:
    plan = actions.add_parser(
        "plan", help="device memory a model needs in each memory mode, and what --memory auto would pick",
        description="Builds the model's real architecture on the meta device (no weights are read or downloaded) "
        "and counts each component's bytes in the chosen format, plus one tile's activations.")
    plan.add_argument("model", metavar="MODEL", help="a repo id (the recommended ones need no download), a local "
                      "diffusers folder or a transformer file with --base")
    plan.add_argument("--base", help="the diffusers model a single transformer file goes with")
    plan.add_argument("--format", dest="weight_format", help="how the transformer is stored: bf16, fp16, fp32, fp8, "
                      "Q8_0, Q6_K, Q5_K, Q4_K, Q4_0, nf4, int8 (default: the file's own, else bf16)")
    plan.add_argument("--text-format", help="how the text encoders are stored (default: the compute dtype)")
    plan.add_argument("--dtype", default="bfloat16", help="compute dtype: bfloat16 (default), float16, float32")
    plan.add_argument("--tile", type=int, default=1024, metavar="PX", help="tile side in pixels (default 1024)")
    plan.add_argument("--vram", type=float, metavar="GIB", help="free device memory to plan for (default: what "
                      "this machine's GPU has free)")


def run_plan(args: argparse.Namespace) -> int:
    import torch

    from engine.backends.loader import DTYPES, resolve_device
    from engine.errors import InvalidInput
    from engine.memory_modes import free_device_bytes, weight_format_of
    from engine.memory_plan import FORMATS, plan_model

    if args.dtype not in DTYPES:
        raise InvalidInput(f"unknown dtype {args.dtype!r}; use bfloat16, float16 or float32")
    dtype = DTYPES[args.dtype]
    fmt = args.weight_format
    path = Path(args.model).expanduser()
    if fmt is None:
        fmt = weight_format_of(path, dtype) if path.is_file() else {torch.float32: "fp32", torch.float16: "fp16"}.get(
            dtype, "bf16")
    for given in (fmt, args.text_format):
        if given is not None and given not in FORMATS:
            raise InvalidInput(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
    device = resolve_device("auto")
    if args.vram is not None:
        free, where = int(args.vram * 2**30), "--vram"
    elif device.type != "cpu":
        free, where = free_device_bytes(device), str(device)
    else:
        free, where = None, ""
    try:
        plan = plan_model(args.model, base=args.base, weight_format=fmt, compute_dtype=dtype,
                          text_format=args.text_format, tile=args.tile, cuda=device.type != "mps")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    print(plan.render(free, where))
    if free is None:
        print("  (no GPU here: pass --vram GIB to see what auto would pick on a card of that size)")
    return 0


def mode_table(formats: tuple[str, ...] = PLAN_FORMATS) -> str:
    """Peak GiB per memory mode for the recommended models with known architectures, per transformer format."""
    from engine.memory_plan import plan_model
    from engine.models.architectures import ARCHITECTURES

    header = ("model", "format", *MEMORY_MODES, "text encoders")
    rows = [header]
    for repo_id in ARCHITECTURES:
        for fmt in formats:
            plan = plan_model(repo_id, weight_format=fmt)
            rows.append((repo_id, fmt, *(f"{plan.peak(mode) / 2**30:.1f}" for mode in MEMORY_MODES),
                         f"{plan.text_bytes / 2**30:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([
        "Peak GPU memory (GiB) per --memory mode, 1024-pixel tiles, computed in bf16, from the real architectures "
        "on the meta device:", *lines,
        "Text encoders (bf16, GiB) load only for a prompt not seen before, and are freed before the transformer "
        "runs; where they do not fit beside the mode's weights they run on the CPU. `uprez models plan MODEL "
        "--vram GIB` shows one model in detail.",
    ])
