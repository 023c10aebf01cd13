"""LoRAs: find and identify them (files), apply them to a loaded backend (apply), train one for upscaling (train).

Loading goes through the family pipeline's own diffusers loader (`load_lora_weights` and its converters for
kohya/ComfyUI/trainer names) and peft's adapters; what is ours is telling a LoRA's family from its keys before a
job starts, the weights per job, and taking them off again so that a job without LoRAs runs the bare base.
"""

from engine.lora.spec import LoraSpec, parse_lora

__all__ = ["LoraSpec", "parse_lora"]
