"""A short list of models worth pulling, with their licence, download size and the GPU memory they need.

Where the figures come from: parameter counts and licences are the ones each model card states. Sizes are
those counts at 2 bytes per parameter (the bf16/fp16 weights `uprez models pull` fetches: the diffusers
components, not the repo's extra single-file copy), rounded; `pull` reads the exact size from the Hub before
it starts. VRAM is an estimate, not a measurement: with `--offload`, the largest component (the transformer,
or SD3.5 Medium's T5 text encoder) must fit at once, plus about 3 GiB of working memory for 1024-pixel tiles;
without it, every component stays on the GPU. Every figure prints in binary units (GiB), as `uprez models list`
and `pull` print sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.memory import format_bytes

BYTES_PER_PARAM = 2  # bf16/fp16
WORKING_MEMORY = 3 * 2**30  # activations and VAE buffers for 1024-pixel tiles


@dataclass(frozen=True)
class Recommended:
    repo_id: str
    licence: str
    gated: bool  # the licence must be accepted on huggingface.co while logged in before downloading
    parts_b: tuple[tuple[str, float], ...]  # (component, billions of parameters)
    note: str

    @property
    def size_bytes(self) -> int:
        return round(sum(params for _, params in self.parts_b) * 1e9 * BYTES_PER_PARAM)

    @property
    def vram_offload_bytes(self) -> int:
        return round(max(params for _, params in self.parts_b) * 1e9 * BYTES_PER_PARAM) + WORKING_MEMORY

    @property
    def vram_full_bytes(self) -> int:
        return self.size_bytes + WORKING_MEMORY


FLUX_ENCODERS = (("T5-XXL text encoder", 4.76), ("CLIP-L text encoder", 0.123), ("VAE", 0.084))
SD35_ENCODERS = (("T5-XXL text encoder", 4.76), ("CLIP-G text encoder", 0.695), ("CLIP-L text encoder", 0.123),
                 ("VAE", 0.084))

RECOMMENDED: tuple[Recommended, ...] = (
    Recommended("Tongyi-MAI/Z-Image-Turbo", "Apache-2.0", False,
                (("transformer", 6.15), ("Qwen3-4B text encoder", 4.02), ("VAE", 0.084)),
                "fast (8 steps), the smallest of these; a good first model"),
    Recommended("black-forest-labs/FLUX.1-schnell", "Apache-2.0", False,
                (("transformer", 11.9), *FLUX_ENCODERS), "fast (1-4 steps), free for commercial use"),
    Recommended("black-forest-labs/FLUX.1-dev", "FLUX.1 [dev] Non-Commercial", True,
                (("transformer", 11.9), *FLUX_ENCODERS), "the most detailed FLUX; not for commercial use"),
    Recommended("black-forest-labs/FLUX.2-klein-4B", "Apache-2.0", False,
                (("transformer", 3.9), ("Qwen3-4B text encoder", 4.02), ("VAE", 0.084)),
                "FLUX.2's small step-distilled model (4 steps), free for commercial use"),
    Recommended("black-forest-labs/FLUX.2-klein-9B", "FLUX Non-Commercial License", True,
                (("transformer", 9.1), ("Qwen3-8B text encoder", 8.2), ("VAE", 0.084)),
                "more detail than Klein 4B, still 4 steps; not for commercial use"),
    Recommended("black-forest-labs/FLUX.2-dev", "FLUX.2 [dev] Non-Commercial License", True,
                (("transformer", 32.2), ("Mistral-Small-3.1 text encoder", 24.0), ("VAE", 0.084)),
                "the largest FLUX.2: a quantized (GGUF/fp8) transformer on 24 GiB; not for commercial use"),
    Recommended("lodestones/Chroma1-HD", "Apache-2.0", False,
                (("transformer", 8.9), ("T5-XXL text encoder", 4.76), ("VAE", 0.084)),
                "FLUX.1-schnell's design retrained without guidance distillation (real CFG); free for commercial use"),
    Recommended("stabilityai/stable-diffusion-3.5-medium", "Stability AI Community", True,
                (("transformer", 2.5), *SD35_ENCODERS),
                "the lightest transformer; free below USD 1M yearly revenue"),
    Recommended("stabilityai/stable-diffusion-3.5-large", "Stability AI Community", True,
                (("transformer", 8.1), *SD35_ENCODERS), "free below USD 1M yearly revenue"),
    Recommended("Qwen/Qwen-Image", "Apache-2.0", False,
                (("transformer", 20.4), ("Qwen2.5-VL-7B text encoder", 8.3), ("VAE", 0.127)),
                "the largest: needs a 48 GiB GPU even with --offload"),
)


def table(installed: frozenset[str] | set[str] = frozenset()) -> str:
    """The recommended models as a plain-text table, marking those already on this machine."""
    rows = [("model", "licence", "gated", "download", "VRAM --offload / all on GPU", "")]
    for model in RECOMMENDED:
        rows.append((model.repo_id, model.licence, "yes" if model.gated else "no", f"~{format_bytes(model.size_bytes)}",
                     f"~{format_bytes(model.vram_offload_bytes)} / ~{format_bytes(model.vram_full_bytes)}",
                     "installed" if model.repo_id in installed else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    notes = [f"  {m.repo_id}: {m.note}" for m in RECOMMENDED]
    return "\n".join([*lines, "", *notes, "", FOOTNOTE])


FOOTNOTE = ("Gated: accept the licence on huggingface.co while logged in, then `hf auth login` here. Download: the "
            "parameter counts on the model cards at 2 bytes each (the bf16/fp16 weights pulled). VRAM: estimates, "
            "the largest component + ~3 GiB with --offload. `uprez models pull ID` checks the exact size and your "
            "free disk space before it starts.")
