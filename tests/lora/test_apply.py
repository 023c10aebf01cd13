"""LoRAs on the tiny models of every family, written in diffusers' and kohya's formats: the output follows the
weight, weight 0 (and no LoRA after one) gives the base model's bytes, and another family's LoRA is refused in
one line before any work."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from engine.api import upscale
from engine.errors import InvalidInput
from engine.lora.apply import apply_loras, check_loras
from engine.lora.files import read_lora
from engine.lora.spec import LoraSpec, parse_lora
from engine.settings import UpscaleSettings
from engine.testing.tiny_loras import save_tiny_lora

# tiny model -> the family name its LoRAs carry
FAMILIES = {"flux-schnell": "flux", "sd3": "sd3", "qwen-image": "qwen-image", "z-image": "z-image",
            "flux2-klein": "flux2", "chroma": "chroma"}
SETTINGS = UpscaleSettings(scale=2, seed=0)


@pytest.fixture
def small_image(sample_image) -> Image.Image:
    return sample_image.resize((32, 32), Image.Resampling.LANCZOS)


def _run(backend, image, loras=()) -> np.ndarray:
    """An upscale with `loras` in its settings, as the CLI and the server run one (engine.api applies them)."""
    settings = replace(SETTINGS, loras=tuple(str(spec) for spec in loras))
    return np.asarray(upscale(image, settings, backend=backend)).astype(np.int16)


@pytest.mark.parametrize("tiny", list(FAMILIES))
def test_weight_changes_output_and_zero_is_base(tiny, tiny_backend, small_image, tmp_path):
    backend = tiny_backend(tiny)
    family = FAMILIES[tiny]
    try:
        base = _run(backend, small_image)
        for fmt in ("diffusers", "kohya"):
            path = save_tiny_lora(backend.pipe.transformer, family, tmp_path / f"{fmt}.safetensors", fmt)
            assert read_lora(path).fits(backend.family)
            zero = _run(backend, small_image, [LoraSpec(str(path), 0.0)])
            half = _run(backend, small_image, [LoraSpec(str(path), 0.5)])
            full = _run(backend, small_image, [LoraSpec(str(path), 1.0)])
            assert np.array_equal(zero, base), f"{fmt}: weight 0 must give the base model's bytes"
            d_half, d_full = np.abs(half - base).mean(), np.abs(full - base).mean()
            # The tiny random LoRAs move pixels by a tenth of a code value (Qwen-Image's kohya one) to several on
            # average, and each weight differently (not always further: a random LoRA can saturate).
            assert d_half > 0.1 and d_full > 0.1 and not np.array_equal(half, full), (fmt, d_half, d_full)
        # Both files at once (adapters add up), then none: the transformer is the base again, bytes and modules.
        both = _run(backend, small_image, [LoraSpec(str(tmp_path / "diffusers.safetensors"), 1.0),
                                           LoraSpec(str(tmp_path / "kohya.safetensors"), 1.0)])
        assert not np.array_equal(both, full)
        assert np.array_equal(_run(backend, small_image), base)
        assert not any("lora" in name for name, _ in backend.pipe.transformer.named_modules())
    finally:
        apply_loras(backend, [])


def test_wrong_family_refused_before_loading(tiny_backend, tmp_path):
    flux, sd3 = tiny_backend("flux-schnell"), tiny_backend("sd3")
    flux_lora = save_tiny_lora(flux.pipe.transformer, "flux", tmp_path / "flux-kohya.safetensors", "kohya")
    with pytest.raises(InvalidInput) as refused:
        apply_loras(sd3, [LoraSpec(str(flux_lora))], model="tiny-sd3")
    message = str(refused.value)
    assert "\n" not in message and "flux" in message and "sd3" in message, message
    assert not any("lora" in name for name, _ in sd3.pipe.transformer.named_modules())  # nothing was loaded
    # The header alone decides, so the server and CLI refuse it before a job (or a model) loads.
    with pytest.raises(InvalidInput, match="is a LoRA for flux"):
        check_loras([LoraSpec(str(flux_lora))], "z-image", "tiny-z-image")


def test_same_names_wrong_shapes_refused(tiny_backend, tmp_path):
    """An attention-only diffusers LoRA has no family-specific names; the fit check on the loaded transformer
    refuses one made for another width (here FLUX.2's on Z-Image's names... and FLUX.1's on FLUX.2's)."""
    flux, flux2 = tiny_backend("flux-schnell"), tiny_backend("flux2-klein")
    lora = save_tiny_lora(flux.pipe.transformer, "flux", tmp_path / "flux.safetensors", "kohya")
    with pytest.raises(InvalidInput):
        apply_loras(flux2, [LoraSpec(str(lora))])
    assert not any("lora" in name for name, _ in flux2.pipe.transformer.named_modules())


def test_switching_keeps_one_adapter(tiny_backend, small_image, tmp_path):
    """Switching LoRAs between jobs deletes the previous one's layers (no reload of the base, nothing kept)."""
    backend = tiny_backend("flux-schnell")
    transformer = backend.pipe.transformer
    paths = [save_tiny_lora(transformer, "flux", tmp_path / f"{i}.safetensors", seed=i) for i in range(3)]
    try:
        for path in paths * 2:
            apply_loras(backend, [LoraSpec(str(path), 0.7)])
            assert len(backend.lora_slots.loaded) == 1
            assert backend.pipe.transformer is transformer
        adapters = {name for module in transformer.modules() for name in getattr(module, "lora_A", {})}
        assert len(adapters) == 1
    finally:
        apply_loras(backend, [])


def test_not_a_lora_and_missing_file(tiny_model, tmp_path):
    from engine.testing.tiny_models import save_single_file_transformer

    model_file = save_single_file_transformer(tiny_model("flux-schnell"), tmp_path / "model.safetensors")
    with pytest.raises(InvalidInput, match="is not a LoRA"):
        read_lora(model_file)
    with pytest.raises(Exception, match="does not exist"):
        read_lora(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize(("text", "path", "weight"), [
    ("a.safetensors", "a.safetensors", 1.0), ("a.safetensors:0.5", "a.safetensors", 0.5),
    ("C:\\loras\\a.safetensors", "C:\\loras\\a.safetensors", 1.0),
    ("C:\\l\\a.safetensors:-1", "C:\\l\\a.safetensors", -1.0),
    ("dir:with:colons/a.safetensors:0", "dir:with:colons/a.safetensors", 0.0),
])
def test_parse_lora(text, path, weight):
    spec = parse_lora(text)
    assert (spec.path, spec.weight) == (path, weight)


def test_parse_lora_refuses_wild_weight():
    with pytest.raises(InvalidInput, match="out of range"):
        parse_lora("a.safetensors:50")


@pytest.mark.parametrize("kind", ["gguf", "fp8"])
def test_quantized_bases(kind, tiny_model, small_image, tmp_path):
    """GGUF (diffusers' GGUF layers) and fp8 (layerwise casting) transformers take LoRAs, at full precision."""
    from engine.backends.loader import load_backend
    from engine.testing.quantized_files import save_fp8, save_gguf

    folder = tiny_model("z-image")
    if kind == "gguf":
        path = save_gguf(folder, tmp_path / "z.gguf", "Q8_0", names="z-image-original", arch="lumina2")
    else:
        path = save_fp8(folder, tmp_path / "z.safetensors", names="z-image-original")
    backend = load_backend(path, device="cpu", base=str(folder))
    lora = save_tiny_lora(backend.pipe.transformer, "z-image", tmp_path / "lora.safetensors", "kohya")
    base = _run(backend, small_image)
    changed = _run(backend, small_image, [LoraSpec(str(lora), 1.0)])
    assert np.abs(changed - base).mean() > 1.0
    assert all(p.dtype == backend.dtype for n, p in backend.pipe.transformer.named_parameters() if "lora_" in n)
    assert np.array_equal(_run(backend, small_image, [LoraSpec(str(lora), 0.0)]), base)
    assert np.array_equal(_run(backend, small_image), base)
