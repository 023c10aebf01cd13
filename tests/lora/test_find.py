"""The LoRAs the model manager and the server list: ComfyUI's models/loras (sub-folders too), Uprez's own folder,
$UPREZ_LORA_DIRS; each with its family from the header; files that are not LoRAs are left out."""

from __future__ import annotations

from engine.lora.find import find_loras
from engine.testing.tiny_loras import save_tiny_lora
from engine.testing.tiny_models import save_single_file_transformer


def test_find_loras(tiny_backend, tiny_model, tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras" / "styles").mkdir(parents=True)
    config = tmp_path / "config"
    (config / "loras").mkdir(parents=True)
    flux = tiny_backend("flux-schnell").pipe.transformer
    z_image = tiny_backend("z-image").pipe.transformer
    save_tiny_lora(flux, "flux", comfy / "models" / "loras" / "styles" / "Detail.safetensors", "kohya")
    save_tiny_lora(z_image, "z-image", config / "loras" / "upscale.safetensors", "diffusers")
    save_single_file_transformer(tiny_model("flux-schnell"), comfy / "models" / "loras" / "not-a-lora.safetensors")
    (config / "loras" / "broken.safetensors").write_bytes(b"\x00" * 5)

    found = find_loras(config, {"UPREZ_COMFYUI_DIRS": str(comfy)})
    assert [(lora.name, lora.families, lora.where) for lora in found] == [
        ("styles/Detail.safetensors", ("flux", "chroma"), "comfyui"),
        ("upscale.safetensors", ("z-image",), "uprez"),
    ]
    assert found[0].as_json()["families"] == ["flux", "chroma"]


def test_resolve_lora_by_name(tiny_backend, tmp_path):
    import pytest

    from engine.errors import InvalidInput
    from engine.lora.find import resolve_lora

    config = tmp_path / "config"
    (config / "loras" / "sub").mkdir(parents=True)
    path = save_tiny_lora(tiny_backend("flux-schnell").pipe.transformer, "flux",
                          config / "loras" / "sub" / "Sharp.safetensors")
    env: dict[str, str] = {}
    assert resolve_lora("sub/Sharp.safetensors:0.5", config, env) == f"{path.resolve()}:0.5"
    assert resolve_lora("Sharp", config, env) == f"{path.resolve()}:1"  # its file name, without the suffix
    assert resolve_lora(f"{path}:-1", config, env) == f"{path.resolve()}:-1"
    with pytest.raises(InvalidInput, match="was not found"):
        resolve_lora("Blurry:0.5", config, env)
