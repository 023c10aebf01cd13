"""Upscale models `uprez models recommend` suggests and `uprez models pull` fetches into Uprez's SR folder.

Each entry is a file in a Hugging Face repo (the files Krita AI Diffusion installs, plus UltraSharp from its
author's own repo), with the licence of the weights' original release. Only licences that allow commercial
use are recommended; one popular non-commercial model is listed so that people who already use it know where
it stands, and `pull` says so again when it fetches it.

Where each licence was checked (2026-12-03; the model repos' LICENSE files, model cards and OpenModelDB's
entries, which record the licence each author released the weights under):
- OmniSR x2/x4: Apache-2.0. The Hugging Face mirror's card (huggingface.co/Acly/Omni-SR, `license: apache-2.0`)
  and OpenModelDB (data/models/2x-OmniSR-DIV2K.json, 4x-OmniSR-DIV2K.json: "Apache-2.0"). The original repo
  (github.com/Francis0625/Omni-SR) names no licence in its README; its LICENSE file was not in what we could read.
- HAT x4 and Real_HAT_GAN_sharper: Apache-2.0. github.com/XPixelGroup/HAT LICENSE ("Apache License 2.0,
  Copyright 2023 Xiangyu Chen"), and the mirror's card (huggingface.co/Acly/hat, `license: apache-2.0`, which
  points to the original Google Drive weights of that repo).
- NMKD Superscale SP 178000: WTFPL. OpenModelDB (data/models/4x-NMKD-Superscale.json, author nmkd, same
  sha256 1d1b0078... as the mirrored file). The mirror (huggingface.co/gemasai/4x_NMKD-Superscale-SP_178000_G)
  declares no licence of its own; WTFPL allows the redistribution.
- 4x-UltraSharp: CC-BY-NC-SA-4.0, non-commercial. The author's repo (huggingface.co/Kim2091/UltraSharp,
  `license: cc-by-nc-sa-4.0`) and OpenModelDB (data/models/4x-UltraSharp.json). Fetched from there as
  .safetensors (the repo has both; safetensors holds no pickled code).
The datasets behind the weights (DIV2K, ImageNet, the authors' own) have terms of their own, which these
licences do not speak to.
"""

from __future__ import annotations

import sys
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
    SRRecommended("ultrasharp", "Kim2091/UltraSharp", "4x-UltraSharp.safetensors", "ESRGAN", 4, "CC-BY-NC-SA-4.0",
                  False, "NON-COMMERCIAL use only; listed because many already own it"),
)


def find(model_id: str) -> SRRecommended | None:
    return next((m for m in CATALOG if m.id == model_id), None)


def table(installed: set[str] = frozenset()) -> str:
    """The recommendation table, one model a line; `installed` holds the file names already present (a model
    counts as installed in either format: many own UltraSharp as .pth, which pull fetches as .safetensors)."""
    stems = {Path(name).stem for name in installed}
    rows = [("id", "arch", "scale", "licence", "commercial use", "", "notes")]
    for m in CATALOG:
        rows.append((m.id, m.architecture, f"{m.scale}x", m.licence, "yes" if m.commercial else "NO",
                     "installed" if Path(m.filename).stem in stems else "", m.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in rows]
    return "\n".join(["Upscale models (for --model on their own, or --upsampler before a flow refine):", *lines,
                      "Licences are those of the original releases; read the model page before commercial use."])


def pull_sr(model: SRRecommended, folder: Path) -> Path:
    """Download one file into `folder` (Uprez's SR folder) and return its path; an existing copy is kept."""
    from huggingface_hub import hf_hub_download

    if not model.commercial:
        print(f"{model.id}: {model.licence}, NON-COMMERCIAL use only (https://huggingface.co/{model.repo})",
              file=sys.stderr)
    target = folder / model.filename
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    return Path(hf_hub_download(model.repo, model.filename, local_dir=folder))
