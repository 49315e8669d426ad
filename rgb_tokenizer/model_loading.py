"""Settings with which the SFT and DPO recipes have TRL load a model from a folder or Hub id."""

from __future__ import annotations

from trl import DPOConfig, ModelConfig, SFTConfig


def trl_model_init_kwargs(model_args: ModelConfig, training_args: SFTConfig | DPOConfig) -> dict:
    """Build the ``model_init_kwargs`` that TRL's trainers pass to ``from_pretrained`` for the policy (and reference).

    Keys the user already set in ``training_args.model_init_kwargs`` take precedence.
    """
    return {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        "trust_remote_code": training_args.trust_remote_code,
        # Pickle weights (pytorch_model.bin) can run code when loaded.
        "use_safetensors": True,
        # The trainer moves the model (or its FSDP or ZeRO shard) to each process's device. TRL's
        # default of "auto" on a GPU would spread one copy over every GPU the process can see.
        "device_map": None,
        **(training_args.model_init_kwargs or {}),
    }
