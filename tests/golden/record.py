"""Record the golden matrix's outputs: `python tests/golden/record.py` (only when outputs change on purpose).

`python tests/golden/record.py builtin` re-records only the jobs of that model (new shipped weights) and keeps
every other job's recorded bytes as they are."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from matrix import JOBS, cpu_capability, run_job  # noqa: E402

RECORDED = Path(__file__).resolve().parent / "recorded.npz"


def backends(root: Path):
    from engine.backends.loader import load_backend
    from engine.testing.tiny_models import save_tiny_model

    loaded = {}

    def get(model: str):
        if model not in loaded:
            source = "builtin" if model == "builtin" else save_tiny_model(model, root / model)
            loaded[model] = load_backend(source, device="cpu")
        return loaded[model]

    return get


def upsampler(root: Path) -> str:
    from engine.testing.tiny_sr import save_tiny_sr

    return str(save_tiny_sr(root / "sr", "esrgan", 4))


def main() -> None:
    torch.set_num_threads(1)  # as the suite runs: thread count changes reduction order
    only = set(sys.argv[1:])
    outputs = {}
    if only:
        with np.load(RECORDED) as recorded:
            outputs = {name: recorded[name] for name in recorded.files if name != "__capability__"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        get, sr = backends(root), upsampler(root)
        outputs.update({job.name: run_job(job, get, sr) for job in JOBS if not only or job.model in only})
    np.savez_compressed(RECORDED, __capability__=np.array(cpu_capability()), **outputs)
    print(f"recorded {len(outputs)} outputs to {RECORDED} ({RECORDED.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
