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
