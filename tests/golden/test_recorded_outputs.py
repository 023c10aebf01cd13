"""The golden matrix's outputs equal the recorded bytes (issue 17: refactors keep behaviour byte for byte)."""

from __future__ import annotations

import numpy as np
import pytest
from matrix import JOBS, cpu_capability, run_job
from record import RECORDED


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(RECORDED) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def backend_for(tiny_backend):
    from engine.backends.loader import load_backend

    builtin = []

    def get(model: str):
        if model != "builtin":
            return tiny_backend(model)
        if not builtin:
            builtin.append(load_backend("builtin", device="cpu"))
        return builtin[0]

    return get


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory) -> str:
    from engine.testing.tiny_sr import save_tiny_sr

    return str(save_tiny_sr(tmp_path_factory.mktemp("golden-sr"), "esrgan", 4))


def test_every_job_is_recorded_and_every_switch_changes_the_output(recorded):
    assert sorted(recorded) == sorted([job.name for job in JOBS] + ["__capability__"])
    # A switch that changed nothing would let a refactor drop it unnoticed.
    # Except tile_batch: batching equal-sized tiles must not change a byte, and with issue 21's evenly spread
    # tiles it does not (tests/test_tiling.py checks that too); its job guards the batched path's bytes.
    outputs = [recorded[job.name].tobytes() + str(recorded[job.name].shape).encode() for job in JOBS
               if job.name != "flux-dev-tiled-batch2"]
    assert len(set(outputs)) == len(outputs)


@pytest.mark.parametrize("job", JOBS, ids=[job.name for job in JOBS])
def test_output_bytes_are_unchanged(job, recorded, backend_for, upsampler):
    got = run_job(job, backend_for, upsampler)
    want = recorded[job.name]
    assert got.shape == want.shape and got.dtype == want.dtype
    if str(recorded["__capability__"]) == cpu_capability():
        assert np.array_equal(got, want), (
            f"{job.name}: output changed (max difference {np.abs(got.astype(np.int64) - want).max()} code values); "
            "if on purpose, rerun tests/golden/record.py and say why in the commit")
    else:  # another CPU's kernels round differently; a real change moves far more than one code value
        step = 257 if want.dtype == np.uint16 else 1
        assert np.abs(got.astype(np.int64) - want).max() <= step, (
            f"{job.name}: output changed beyond rounding on {cpu_capability()} "
            f"(recorded on {recorded['__capability__']})")
