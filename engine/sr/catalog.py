"""Upscale models `uprez models recommend` suggests and `uprez models pull` fetches into Uprez's SR folder.

Each entry is a file in a Hugging Face repo (the same files Krita AI Diffusion installs), with the licence of
its original release. Only licences that allow commercial use are recommended; one popular non-commercial
model is listed so that people who already use it know where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SRRecommended:
    id: str  # what `uprez models pull` takes
    repo: str
    filename: str
    architecture: str
    scale: int
    licence: str
    commercial: bool
    note: str


CATALOG = (
    SRRecommended("omnisr-x2", "Acly/Omni-SR", "OmniSR_X2_DIV2K.safetensors", "OmniSR", 2, "Apache-2.0", True,
                  "fast; a good first stage for the flow refine"),
    SRRecommended("omnisr-x4", "Acly/Omni-SR", "OmniSR_X4_DIV2K.safetensors", "OmniSR", 4, "Apache-2.0", True,
                  "fast 4x"),
    SRRecommended("hat-x4", "Acly/hat", "HAT_SRx4_ImageNet-pretrain.pth", "HAT", 4, "Apache-2.0", True,
                  "faithful, slow (a transformer)"),
    SRRecommended("hat-gan-sharper", "Acly/hat", "Real_HAT_GAN_sharper.pth", "HAT", 4, "Apache-2.0", True,
                  "for real photos: removes noise and blur, sharper"),
    SRRecommended("nmkd-superscale", "gemasai/4x_NMKD-Superscale-SP_178000_G", "4x_NMKD-Superscale-SP_178000_G.pth",
                  "ESRGAN", 4, "WTFPL", True, "photos; Krita AI Diffusion's default"),
    SRRecommended("ultrasharp", "Kim2091/UltraSharp", "4x-UltraSharp.pth", "ESRGAN", 4, "CC-BY-NC-SA-4.0", False,
                  "NON-COMMERCIAL use only; listed because many already own it"),
)


def find(model_id: str) -> SRRecommended | None:
    return next((m for m in CATALOG if m.id == model_id), None)


def table(installed: set[str] = frozenset()) -> str:
    """The recommendation table, one model a line; `installed` holds the file names already present."""
    rows = [("id", "arch", "scale", "licence", "commercial use", "", "notes")]
    for m in CATALOG:
        rows.append((m.id, m.architecture, f"{m.scale}x", m.licence, "yes" if m.commercial else "NO",
                     "installed" if m.filename in installed else "", m.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in rows]
    return "\n".join(["Upscale models (for --model on their own, or --upsampler before a flow refine):", *lines,
                      "Licences are those of the original releases; read the model page before commercial use."])


def pull_sr(model: SRRecommended, folder: Path) -> Path:
    """Download one file into `folder` (Uprez's SR folder) and return its path; an existing copy is kept."""
    from huggingface_hub import hf_hub_download

    target = folder / model.filename
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    return Path(hf_hub_download(model.repo, model.filename, local_dir=folder))
