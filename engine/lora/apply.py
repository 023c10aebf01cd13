"""Put a job's LoRAs on a loaded backend, and take them off again, without reloading the base.

Every diffusers backend holds its family's pipeline, and every such pipeline carries the family's LoRA loader
mixin (FluxLoraLoaderMixin, SD3LoraLoaderMixin, QwenImageLoraLoaderMixin, ZImageLoraLoaderMixin,
Flux2LoraLoaderMixin; Chroma's is FLUX's): `load_lora_weights` converts kohya/ComfyUI/ai-toolkit names and injects
peft adapters into the transformer in place, `set_adapters` weights them, `delete_adapters` and
`unload_lora_weights` take them out. A file stays loaded while jobs keep naming it (a new weight is only
`set_adapters`); one no job names any more is deleted, and a job with none unloads them all, which gives the
transformer back its own modules, so it computes exactly what it did before any LoRA.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engine.errors import InvalidInput, ModelNotFound
from engine.lora.files import LoraFile, check_family, read_lora
from engine.lora.spec import LoraSpec

_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "te_", "te1_", "te2_")
_DIFFUSERS_KEY = re.compile(r"^(?:transformer\.)?(?P<module>.+)\.lora_(?P<side>[AB])(?:\.[\w-]+)?\.weight$")


def adapter_name(lora: LoraFile) -> str:
    """A stable peft adapter name for a file as it is now (its path, size and time): a changed file reloads."""
    stat = lora.path.stat()
    digest = hashlib.sha1(f"{lora.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return f"lora_{digest[:12]}"


def source_family(source: str) -> str | None:
    """The family of a model named by path, from its model_index.json or its checkpoint's keys, before it loads;
    None where that takes a load (a repo id) or the model is not a flow family (the built-in model)."""
    from engine.backends.registry import family_for_keys, family_for_pipeline
    from engine.models.ref import ModelRef

    try:
        ref = ModelRef.parse(source)
        if ref.kind == "diffusers" and ref.path is not None:
            name = json.loads((ref.path / "model_index.json").read_text())["_class_name"]
            return family_for_pipeline(name, source).name
        if ref.kind in ("safetensors", "gguf") and ref.path is not None:
            from engine.backends.quantized import read_checkpoint

            return family_for_keys(list(read_checkpoint(ref.path).keys), source).name
    except Exception:  # not ours to refuse here: the model's own load says what is wrong with it
        return None
    return None


def check_loras(specs: Sequence[LoraSpec], family: str | None, model: str) -> list[LoraFile]:
    """Read each LoRA's header and refuse, in one line, a missing file or one for another family than `family`
    (None: not known before the model loads; checked again then)."""
    files = []
    for spec in specs:
        lora = read_lora(spec.path)
        if family is not None:
            check_family(lora, family, model)
        files.append(lora)
    return files


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types on a cut or foreign file
        raise InvalidInput(f"{path.name} is not a readable .safetensors LoRA: {exc}") from exc
    # The text-encoder part some FLUX LoRAs carry is left out: Uprez encodes prompts once, with the base encoders.
    return {k: v for k, v in state.items() if not k.startswith(_TEXT_ENCODER_PREFIXES)}


def _underscored(state: dict[str, torch.Tensor], transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """kohya's `lora_unet_<module_path_with_underscores>` names for a family diffusers has no converter for (SD3):
    matched against the transformer's own module names, alpha folded into lora_B (scale = alpha / rank)."""
    names = {name.replace(".", "_"): name for name, _ in transformer.named_modules() if name}
    out: dict[str, torch.Tensor] = {}
    for key, down in state.items():
        match = re.match(r"^lora_(?:unet|transformer)_(?P<flat>.+)\.lora_down\.weight$", key)
        if not match:
            continue
        flat = match["flat"]
        module = names.get(flat)
        up = state.get(key.replace(".lora_down.", ".lora_up."))
        if module is None or up is None:
            raise InvalidInput(f"LoRA layer {flat!r} matches no layer of this model")
        alpha = state.get(f"lora_unet_{flat}.alpha", state.get(f"lora_transformer_{flat}.alpha"))
        scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
        out[f"transformer.{module}.lora_A.weight"] = down
        out[f"transformer.{module}.lora_B.weight"] = up * scale
    return out


def converted_state(pipe: Any, lora: LoraFile) -> dict[str, torch.Tensor]:
    """The LoRA's tensors as the pipeline's loader will inject them: its own converter's output (diffusers names),
    or, for kohya names of SD3 (which diffusers does not convert), ours above."""
    state = _read_state(lora.path)
    if any(k.startswith(("lora_unet_", "lora_transformer_")) for k in state) and \
            type(pipe).__name__.startswith("StableDiffusion3"):
        return _underscored(state, pipe.transformer)
    return state


def _target_names(pipe: Any, state: dict[str, torch.Tensor], lora: LoraFile) -> dict[str, tuple[int, int]]:
    """Module -> (in, out) features each LoRA layer expects, from the pipeline's own converter."""
    try:
        converted = type(pipe).lora_state_dict({k: v for k, v in state.items()})
    except Exception as exc:  # a converter meeting another family's keys fails in its own way (KeyError, assert...)
        raise InvalidInput(f"{lora.path.name} is a LoRA for {lora.family_text} that this {type(pipe).__name__} "
                           f"cannot read ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if isinstance(converted, tuple):
        converted = converted[0]
    targets: dict[str, list[int]] = {}
    for key, tensor in converted.items():
        match = _DIFFUSERS_KEY.match(key)
        if match is None or tensor.ndim != 2:
            continue
        entry = targets.setdefault(match["module"], [0, 0])
        if match["side"] == "A":
            entry[0] = int(tensor.shape[1])
        else:
            entry[1] = int(tensor.shape[0])
    return {module: (shape[0], shape[1]) for module, shape in targets.items()}


def check_fit(pipe: Any, state: dict[str, torch.Tensor], lora: LoraFile, model: str) -> None:
    """Refuse, in one line, a LoRA whose layers are not this transformer's (another family, or another size of
    the same family, e.g. a FLUX.2 dev LoRA on Klein): every layer must exist with the LoRA's in/out features."""
    targets = _target_names(pipe, state, lora)
    if not targets:
        raise InvalidInput(f"{lora.path.name} has no LoRA layers for the transformer (only text-encoder ones?); "
                           "Uprez applies LoRAs to the transformer")
    modules = dict(pipe.transformer.named_modules())
    for module, (n_in, n_out) in targets.items():
        layer = modules.get(module)
        have = (getattr(layer, "in_features", None), getattr(layer, "out_features", None))
        if layer is None or (n_in and have[0] not in (None, n_in)) or (n_out and have[1] not in (None, n_out)):
            what = "has no layer" if layer is None else f"has {have[0]}->{have[1]} features at"
            raise InvalidInput(
                f"{lora.path.name} does not fit {model}: the model {what} {module} "
                f"(the LoRA expects {n_in}->{n_out}); it is a LoRA for {lora.family_text}, of another model or size")


class LoraSlots:
    """The adapters on one backend's transformer: name -> file, and what the last job set."""

    def __init__(self) -> None:
        self.loaded: dict[str, LoraFile] = {}

    def names(self) -> list[str]:
        return list(self.loaded)


def _slots(backend: Any) -> LoraSlots:
    slots = getattr(backend, "lora_slots", None)
    if slots is None:
        slots = backend.lora_slots = LoraSlots()
    return slots


def apply_loras(backend: Any, specs: Sequence[LoraSpec], model: str | None = None) -> None:
    """Make `specs` the backend's LoRAs for the next job: check them all first (a refusal changes nothing), load
    the new files, delete the ones no longer named, and set the weights; none unloads every adapter."""
    model = model or getattr(backend, "source", "this model")
    slots = _slots(backend)
    pipe = getattr(backend, "pipe", None)
    if not specs:
        if slots.loaded:
            pipe.unload_lora_weights()
            slots.loaded.clear()
        return
    if pipe is None or not hasattr(pipe, "load_lora_weights"):
        raise InvalidInput(f"the model {model} takes no LoRAs; they apply to FLUX.1, FLUX.2, SD3, Qwen-Image, "
                           "Z-Image and Chroma models")
    _check_quantized(pipe, model)
    files = check_loras(specs, backend.family, model)
    weights: dict[str, float] = {}
    new: dict[str, tuple[LoraFile, dict[str, torch.Tensor]]] = {}
    for spec, lora in zip(specs, files, strict=True):
        name = adapter_name(lora)
        weights[name] = weights.get(name, 0.0) + spec.weight  # the same file twice adds up
        if name not in slots.loaded and name not in new:
            state = converted_state(pipe, lora)
            check_fit(pipe, state, lora, model)
            new[name] = (lora, state)
    if new:
        _adapters_in_compute_dtype(pipe.transformer, backend.dtype)
    stale = [name for name in slots.loaded if name not in weights]
    if stale:
        pipe.delete_adapters(stale)
        for name in stale:
            del slots.loaded[name]
    for name, (lora, state) in new.items():
        try:
            pipe.load_lora_weights(state, adapter_name=name)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise InvalidInput(f"diffusers could not apply {lora.path.name} to {model}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        slots.loaded[name] = lora
    pipe.set_adapters(list(weights), list(weights.values()))


def _adapters_in_compute_dtype(transformer: torch.nn.Module, compute: torch.dtype) -> None:
    """fp8-stored layers (fp8.py's layerwise casting) say their compute dtype the way peft reads it from bnb and
    GGUF layers (`compute_dtype`): peft then makes their adapters in it instead of in fp8, which would round the
    LoRA's weights to 3 mantissa bits and has no CPU matmul."""
    for module in transformer.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) \
                and not hasattr(module, "compute_dtype"):
            module.compute_dtype = compute


def _check_quantized(pipe: Any, model: str) -> None:
    """bitsandbytes-quantized transformers take LoRAs through peft's bnb layers, which need CUDA like bnb itself;
    GGUF and fp8 (layerwise casting) transformers take them as they are (tests/lora: test_quantized_bases)."""
    config = getattr(pipe.transformer, "config", None)
    quant = getattr(config, "quantization_config", None) if config is not None else None
    method = getattr(quant, "quant_method", None) or (quant.get("quant_method") if isinstance(quant, dict) else None)
    if method is not None and str(method).endswith("bitsandbytes") and not torch.cuda.is_available():
        raise ModelNotFound(f"{model} is bitsandbytes-quantized, and LoRAs on it need CUDA")
