"""Peak memory of loading one transformer from each file format: full precision, fp8 (as Uprez loads it, and as
a plain diffusers load in the compute dtype would), GGUF Q8_0 and Q4_0.

The transformer is FLUX.1's architecture at a mid size with random weights (the real widths' proportions, fewer
and narrower blocks), so that the figures are about the format, not the machine. Each load runs in its own
process; the figure is its peak RSS above what the process held just before the load (Linux), and the size of
the transformer's tensors once loaded. Usage: `python bench/quantized_load.py [--width 1024]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CASES = ("full", "fp8", "fp8-plain", "Q8_0", "Q4_0")


def build(folder: Path, width: int) -> None:
    """A transformer-only diffusers folder (config + weights) and its fp8/GGUF files."""
    import torch
    from diffusers import FluxTransformer2DModel

    from engine.testing.quantized_files import save_fp8, save_gguf

    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4,
                                   attention_head_dim=128, num_attention_heads=width // 128,
                                   joint_attention_dim=width, pooled_projection_dim=width // 2,
                                   guidance_embeds=True, axes_dims_rope=[16, 56, 56])
    model.to(torch.bfloat16).save_pretrained(folder / "transformer")  # as FLUX.1 is published: bf16
    from safetensors.torch import load_file, save_file

    state = {}
    for shard in (folder / "transformer").glob("*.safetensors"):
        state.update(load_file(shard))
    save_file(state, str(folder / "full.safetensors"))
    save_fp8(folder, folder / "fp8.safetensors")
    save_gguf(folder, folder / "Q8_0.gguf", "Q8_0")
    save_gguf(folder, folder / "Q4_0.gguf", "Q4_0")


def _status_kib(field: str) -> int:
    """VmRSS (resident now) or VmHWM (its peak) from Linux's /proc: unlike ru_maxrss, which a child inherits from
    the parent that forked it, VmHWM belongs to this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (this script measures on Linux)")


def measure(folder: Path, case: str) -> dict:
    """In this process: load `case` as Uprez does (float32 on the CPU) and report the peak RSS."""
    import torch
    from diffusers import FluxTransformer2DModel

    from engine.backends.loader import quiet_libraries
    from engine.backends.quantized import load_transformer, read_checkpoint

    quiet_libraries()
    torch.set_num_threads(1)
    file = {"full": "full.safetensors", "fp8": "fp8.safetensors", "fp8-plain": "fp8.safetensors"}.get(
        case, f"{case}.gguf")
    checkpoint = read_checkpoint(folder / file)
    before = _status_kib("VmRSS")
    if case == "fp8-plain":  # diffusers' own load in the compute dtype: what Uprez avoids
        model = FluxTransformer2DModel.from_single_file(str(checkpoint.path), config=str(folder),
                                                        subfolder="transformer", dtype=torch.float32)
    else:
        model = load_transformer(checkpoint, FluxTransformer2DModel, str(folder), torch.float32,
                                 torch.device("cpu"))
    peak = _status_kib("VmHWM")
    # Weights loaded in the file's own dtype can stay mapped from the file until first read: read every byte.
    for tensor in [*model.parameters(), *model.buffers()]:
        torch.Tensor._make_subclass(torch.Tensor, tensor.detach()).reshape(-1).view(torch.uint8).max()  # GGUF too
    used = _status_kib("VmHWM")
    held = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return {"case": case, "file_mib": (folder / file).stat().st_size / 2**20, "peak_mib": (peak - before) / 1024,
            "used_mib": (used - before) / 1024, "held_mib": held / 2**20,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024, help="transformer width (FLUX.1: 3072)")
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, args.width)
        rows = []
        for case in CASES:
            done = subprocess.run([sys.executable, __file__, "--measure", str(folder), case], capture_output=True,
                                  text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"FLUX.1 architecture, width {args.width}, {rows[0]['params_m']:.0f} M parameters; float32 compute "
          "on the CPU; peak RSS of the load above the process's RSS before it\n")
    print("| file | file MiB | load peak MiB | peak MiB once every weight is read | transformer tensors MiB |")
    print("|---|---:|---:|---:|---:|")
    names = {"full": "bf16 .safetensors", "fp8": "fp8 e4m3fn (Uprez)", "fp8-plain": "fp8 e4m3fn (plain load)",
             "Q8_0": "GGUF Q8_0", "Q4_0": "GGUF Q4_0"}
    for row in rows:
        print(f"| {names[row['case']]} | {row['file_mib']:.0f} | {row['peak_mib']:.0f} | {row['used_mib']:.0f} "
              f"| {row['held_mib']:.0f} |")


if __name__ == "__main__":
    main()
