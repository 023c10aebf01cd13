"""The model families Uprez drives, named in one table, and the built-in model's entry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UnknownModelFamily
from engine.settings import BUILTIN_MODEL


@dataclass(frozen=True)
class Family:
    """How to recognise, load and drive one diffusers flow-matching family."""

    name: str
    backend: str  # "module:Class" of its FlowBackend adapter, imported on first use
    pipeline_class: str  # diffusers text-to-image pipeline whose components we drive
    transformer_class: str
    index_prefixes: tuple[str, ...]  # model_index.json `_class_name` prefixes of this family
    key_markers: tuple[str, ...]  # any of these in a single-file state dict identifies the family
    default_base: str  # repo whose VAE and text encoders go with a transformer-only checkpoint
    default_base_guided: str | None = None  # FLUX: dev (guidance-distilled) differs from schnell

    def backend_class(self) -> type:
        module, name = self.backend.split(":")
        return getattr(importlib.import_module(module), name)


# Order matters for single-file detection: the most specific markers are tried first.
FAMILIES: tuple[Family, ...] = (
    Family(
        name="z-image",
        backend="engine.backends.z_image:ZImageBackend",
        pipeline_class="ZImagePipeline",
        transformer_class="ZImageTransformer2DModel",
        index_prefixes=("ZImage",),
        key_markers=("cap_embedder.", "noise_refiner.", "context_refiner."),
        default_base="Tongyi-MAI/Z-Image-Turbo",
    ),
    Family(
        name="qwen-image",
        backend="engine.backends.qwen_image:QwenImageBackend",
        pipeline_class="QwenImagePipeline",
        transformer_class="QwenImageTransformer2DModel",
        index_prefixes=("QwenImage",),
        key_markers=("txt_norm.",),  # FLUX's original keys have img_mod too
        default_base="Qwen/Qwen-Image",
    ),
    Family(
        name="sd3",
        backend="engine.backends.sd3:SD3Backend",
        pipeline_class="StableDiffusion3Pipeline",
        transformer_class="SD3Transformer2DModel",
        index_prefixes=("StableDiffusion3",),
        key_markers=("pos_embed.proj.", "joint_blocks.", "x_embedder.proj."),
        default_base="stabilityai/stable-diffusion-3.5-large",
    ),
    Family(
        name="flux2",
        backend="engine.backends.flux2:Flux2Backend",
        # Klein (Qwen3 text encoder) and dev (Mistral 3) have different pipeline classes: the folder's
        # model_index.json names which one, and DiffusionPipeline.from_pretrained builds it.
        pipeline_class="DiffusionPipeline",
        transformer_class="Flux2Transformer2DModel",
        index_prefixes=("Flux2",),
        # Original (BFL/ComfyUI) ".lin." and diffusers ".linear." names share these prefixes; FLUX.2 also has
        # single_transformer_blocks./double_blocks., so it must be tried before FLUX.1.
        key_markers=("single_stream_modulation.", "double_stream_modulation_img."),
        default_base="black-forest-labs/FLUX.2-klein-4B",
        default_base_guided="black-forest-labs/FLUX.2-dev",
    ),
    Family(
        name="chroma",
        backend="engine.backends.chroma:ChromaBackend",
        pipeline_class="ChromaPipeline",
        transformer_class="ChromaTransformer2DModel",
        index_prefixes=("Chroma",),
        key_markers=("distilled_guidance_layer.",),  # its modulation approximator, in both key conventions
        default_base="lodestones/Chroma1-HD",
    ),
    Family(
        name="flux",
        backend="engine.backends.flux:FluxBackend",
        pipeline_class="FluxPipeline",
        transformer_class="FluxTransformer2DModel",
        index_prefixes=("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
        key_markers=("single_transformer_blocks.", "double_blocks.", "single_blocks."),
        default_base="black-forest-labs/FLUX.1-schnell",
        default_base_guided="black-forest-labs/FLUX.1-dev",
    ),
)

GUIDANCE_KEY_MARKERS = ("guidance_embedder.", "guidance_in.")
SUPPORTED = ", ".join(f.name for f in FAMILIES)


def family_named(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise UnknownModelFamily(f"unknown model family {name!r}; supported families: {SUPPORTED}")


def family_for_pipeline(class_name: str, where: str) -> Family:
    """The family whose pipelines are named like `class_name` (from model_index.json)."""
    for family in FAMILIES:
        if class_name.startswith(family.index_prefixes):
            return family
    raise UnknownModelFamily(
        f"{where} is a {class_name} model, which Uprez cannot drive; supported families: {SUPPORTED}"
    )


def family_for_keys(keys: list[str], where: str) -> Family:
    """The family of a single-file transformer checkpoint, from its state-dict key names."""
    stripped = [k.removeprefix("model.diffusion_model.") for k in keys]
    for family in FAMILIES:
        if any(marker in key for key in stripped for marker in family.key_markers):
            return family
    raise UnknownModelFamily(
        f"{where} does not look like a transformer checkpoint of a supported family ({SUPPORTED})"
    )


@dataclass(frozen=True)
class BuiltinModel:
    """The model that ships with Uprez, as a registry entry: its name, and the module that loads it.

    The module (engine.builtin.backend: above the backends, since it is one) is imported on first use, so
    nothing here imports upward; it keeps the names `WEIGHTS`, `is_builtin_folder` and `load_builtin`.
    """

    name: str
    module: str

    def _module(self):  # noqa: ANN202 - a module
        return importlib.import_module(self.module)

    def weights(self) -> Path:
        """The shipped weights' folder."""
        return self._module().WEIGHTS

    def is_folder(self, path: Path) -> bool:
        """Whether `path` is a folder of this model's format (the shipped one, or a training run's export)."""
        return bool(self._module().is_builtin_folder(path))

    def load(self, folder: Path, **options: Any) -> Any:
        """Its backend from `folder` (source, device, dtype as the module's loader takes them)."""
        return self._module().load_builtin(folder, **options)


BUILTIN = BuiltinModel(BUILTIN_MODEL, "engine.builtin.backend")
