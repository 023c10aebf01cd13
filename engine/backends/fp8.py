"""fp8 transformer files kept in fp8: diffusers' single-file loader, then its layerwise-casting hook per layer.

Each layer whose weight the file stores in float8 keeps that weight in float8 and casts it to the compute dtype
only inside its forward (fp8 -> bf16/fp16/fp32 is exact). Everything else is in the compute dtype, with the
values the file holds. The file is loaded *as* fp8, so the load's peak is the file plus the fp8 model, not a
compute-dtype copy of it (bf16 would be twice the file, fp32 on the CPU four times).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

FP8_DTYPES = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}  # safetensors' names


def fp8_storable(storage: torch.dtype, device: torch.device) -> bool:
    """Whether `device` can hold `storage` tensors and cast them (CUDA and the CPU can; MPS depends on torch)."""
    try:
        torch.zeros(2, device=device).to(storage).to(torch.float32)
    except (RuntimeError, TypeError):
        return False
    return True


def load_fp8(transformer_cls: type, source: Any, storage: dict[str, torch.dtype], compute: torch.dtype,
             kwargs: dict[str, Any]) -> torch.nn.Module:
    """The transformer of an fp8 file (`source`: its path, or its state dict), fp8 layers kept in fp8.

    `storage` maps the file's keys to their fp8 dtype. A file mixing e4m3fn and e5m2 is loaded in `compute` first
    and its fp8 layers cast back (the same result, a higher peak).
    """
    from accelerate import init_empty_weights

    config = transformer_cls.load_config(kwargs["config"], subfolder=kwargs["subfolder"], local_files_only=True)
    with init_empty_weights():  # parameters on the meta device; buffers real, as the loader builds them
        empty = transformer_cls.from_config(config)
    try:
        named = _model_names(empty, _shape_only(source, storage))
    except Exception:  # a converter step that needs real values (none of our families' has one today)
        logging.getLogger("uprez").warning("could not tell which layers of this fp8 file are fp8; it is kept in %s",
                                           compute)
        return transformer_cls.from_single_file(source, dtype=compute, **kwargs)
    kinds = set(storage.values())
    if len(kinds) != 1:  # e4m3fn and e5m2 in one file: load in `compute`, then each layer back to its fp8
        transformer = transformer_cls.from_single_file(source, dtype=compute, **kwargs)
        _hook_fp8_layers(transformer, named, compute)
        return transformer
    transformer = transformer_cls.from_single_file(source, dtype=next(iter(kinds)), **kwargs)
    hooked = _fp8_layers(transformer, named)
    fresh = dict(empty.named_buffers())
    for module_name, module in transformer.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for name, param in module.named_parameters(recurse=False):
            target = _target(transformer, prefix + name, compute)
            value = named.get(prefix + name)
            if value is not None and value.device.type != "meta":  # the file keeps it in higher precision
                param.data = value.to(target)
            elif not (module_name in hooked and name == "weight"):
                param.data = param.data.to(target)  # fp8 -> wider: exact
        for name, buffer in list(module.named_buffers(recurse=False)):
            # The loader cast buffers to fp8 with everything else: the file's value where it has one (a
            # persistent buffer), else the one the model was built with.
            value = named.get(prefix + name)
            original = value if value is not None and value.device.type != "meta" else fresh.get(prefix + name, buffer)
            module._buffers[name] = original.to(_target(transformer, prefix + name, compute)) \
                if original.is_floating_point() else original
    _hook_fp8_layers(transformer, named, compute)
    return transformer


def _target(model: torch.nn.Module, name: str, compute: torch.dtype) -> torch.dtype:
    """`compute`, or float32 for what the model keeps in fp32 when it computes in float16 (as diffusers does)."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    return torch.float32 if compute == torch.float16 and any(k in name for k in keep) else compute


def _shape_only(source: Any, storage: dict[str, torch.dtype], real: bool = True) -> dict[str, torch.Tensor]:
    """The file's tensors with the fp8 ones as meta tensors (shape and dtype only); the others real when `real`."""
    from safetensors import safe_open

    from engine.backends.quantized import COMFY_PREFIX

    def meta(shape: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(tuple(shape), device="meta", dtype=dtype)

    if isinstance(source, dict):
        return {k: v if real and v.dtype not in FP8_DTYPES.values() else meta(v.shape, v.dtype)
                for k, v in source.items()}
    out = {}
    with safe_open(str(source), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - not a dict
            name = key.removeprefix(COMFY_PREFIX)
            if real and key not in storage:
                out[name] = f.get_tensor(key)
            else:
                out[name] = meta(f.get_slice(key).get_shape(), storage.get(key, torch.float32))
    return out


def _model_names(model: torch.nn.Module, checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`checkpoint` under the model's own names: the family's key converter, as `from_single_file` runs it."""
    from diffusers.loaders.single_file_model import (
        SINGLE_FILE_LOADABLE_CLASSES,
        _get_single_file_loadable_mapping_class,
        _should_convert_state_dict_to_diffusers,
    )

    if not _should_convert_state_dict_to_diffusers(model.state_dict(), checkpoint):
        return checkpoint
    mapping = SINGLE_FILE_LOADABLE_CLASSES[_get_single_file_loadable_mapping_class(type(model))]
    return mapping["checkpoint_mapping_fn"](config=model.config, checkpoint=dict(checkpoint))


def _fp8_layers(model: torch.nn.Module, named: dict[str, torch.Tensor]) -> dict[str, torch.dtype]:
    """Module name -> fp8 dtype of each layer that stays in fp8: its weight is fp8 in the file, and the model does
    not exempt it from layerwise casting (diffusers' skip patterns: embedders whose parent casts the input to their
    weight's dtype, as Z-Image's t_embedder; what it keeps in fp32).

    The one pattern left out is "norm": diffusers skips normalisation layers so as not to *quantize* them, and an
    fp8 file has quantized them already (FLUX's AdaLayerNorm linears are a quarter of its weights), so casting
    them up per call computes exactly what an upcast at load would, in half the memory.
    """
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = getattr(model, "_skip_layerwise_casting_patterns", None) or DEFAULT_SKIP_MODULES_PATTERN
    skip = [*(p for p in patterns if p != "norm"), *(getattr(model, "_keep_in_fp32_modules", None) or ())]
    layers = {}
    for name, module in model.named_modules():
        weight = named.get(f"{name}.weight")
        if weight is None or weight.dtype not in FP8_DTYPES.values():
            continue
        if isinstance(getattr(module, "weight", None), torch.Tensor) and not any(re.search(p, name) for p in skip):
            layers[name] = weight.dtype
    return layers


def _hook_fp8_layers(model: torch.nn.Module, named: dict[str, torch.Tensor], compute: torch.dtype) -> int:
    """diffusers' layerwise-casting hook (weight only) on every fp8 layer; returns how many there are."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.layerwise_casting import _LAYERWISE_CASTING_HOOK

    layers = _fp8_layers(model, named)
    modules = dict(model.named_modules())
    for name, storage in layers.items():
        registry = HookRegistry.check_if_exists_or_initialize(modules[name])
        registry.register_hook(WeightCastingHook(storage, compute), _LAYERWISE_CASTING_HOOK)
    return len(layers)


def _layerwise_hook_base() -> type:
    from diffusers.hooks.layerwise_casting import LayerwiseCastingHook

    return LayerwiseCastingHook


class WeightCastingHook(_layerwise_hook_base()):
    """diffusers' layerwise casting for the weight alone: fp8 at rest, `compute` inside the layer's forward.

    Registered under diffusers' own hook name, so `model.dtype` reports the compute dtype, as with
    `enable_layerwise_casting`; a bias or norm the file keeps in higher precision is left alone.
    """

    def __init__(self, storage: torch.dtype, compute: torch.dtype) -> None:
        super().__init__(storage, compute, non_blocking=False)

    def _cast(self, module: torch.nn.Module, dtype: torch.dtype) -> None:
        module.weight.data = module.weight.data.to(dtype)

    def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        self._cast(module, self.storage_dtype)
        return module

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        self._cast(module, self.compute_dtype)
        return args, kwargs

    def post_forward(self, module: torch.nn.Module, output: Any) -> Any:
        self._cast(module, self.storage_dtype)
        return output
