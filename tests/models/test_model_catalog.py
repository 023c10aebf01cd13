"""`uprez models recommend` prints sizes in the same units as `list` and `pull` (GiB, engine.memory)."""

from __future__ import annotations

from engine.memory import format_bytes
from engine.models.catalog import RECOMMENDED, table


def test_recommend_uses_the_units_list_and_pull_print():
    flux = next(m for m in RECOMMENDED if m.repo_id == "black-forest-labs/FLUX.1-dev")
    # 16.867 billion parameters at 2 bytes: 33.7e9 bytes, which list and pull would print as 31.4 GiB
    assert flux.size_bytes == 33_734_000_000 and format_bytes(flux.size_bytes) == "31.4 GiB"
    text = table()
    assert f"~{format_bytes(flux.size_bytes)}" in text
    assert f"~{format_bytes(flux.vram_offload_bytes)} / ~{format_bytes(flux.vram_full_bytes)}" in text
    assert " GB" not in text and "GiB" in text
