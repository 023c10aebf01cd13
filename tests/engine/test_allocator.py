"""engine.allocator: freed tensor buffers are reused instead of being mapped and faulted in again (issue 21)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# 20 rounds of a 32 MiB tensor made, written and freed; page faults counted around them.
CHURN = """
import json, resource, sys
sys.path.insert(0, {root!r})
from engine.allocator import tune_allocator
tuned = tune_allocator() if sys.argv[1] == "tuned" else False
import torch
torch.ones(8 << 20)  # warm-up: the first allocation faults its pages in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(8 << 20).add_(1.0)
print(json.dumps({{"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""


def _churn(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "UPREZ_MALLOC"}
    done = subprocess.run([sys.executable, "-c", CHURN.format(root=str(ROOT)), mode], capture_output=True, text=True,
                          env={**clean, **env}, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="mallopt is glibc's; elsewhere tune_allocator does nothing")
def test_tuned_process_reuses_freed_buffers() -> None:
    plain, tuned = _churn("plain"), _churn("tuned")
    assert tuned["tuned"] is True
    pages = 20 * (32 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert plain["faults"] > pages / 2  # glibc's defaults: every round maps and faults in its 32 MiB again
    assert tuned["faults"] < plain["faults"] / 3, (plain, tuned)  # a few rounds fault their pages in, not all 20
    # The opt-out leaves glibc's defaults.
    assert _churn("tuned", UPREZ_MALLOC="system") == {"tuned": False, "faults": pytest.approx(plain["faults"], rel=0.2)}


def test_cli_and_window_entry_points_tune_first() -> None:
    """Both entry points call tune_allocator before their work (a source check: running them here is the CLI
    and window tests' job)."""
    for path, marker in (("engine/cli.py", "def main("), ("ui/app.py", "def main(")):
        body = (ROOT / path).read_text().split(marker, 1)[1]
        assert "tune_allocator()" in body.split("parse_args", 1)[0], path
