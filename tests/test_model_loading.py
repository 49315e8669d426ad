"""The settings with which the SFT and DPO recipes have TRL load a model."""

from trl import DPOConfig, ModelConfig, SFTConfig

from rgb_tokenizer.model_loading import trl_model_init_kwargs


def test_init_kwargs_from_model_args(tmp_path):
    model_args = ModelConfig(model_revision="v1", dtype="bfloat16", attn_implementation="eager")
    kwargs = trl_model_init_kwargs(model_args, SFTConfig(output_dir=str(tmp_path), bf16=False, trust_remote_code=False))
    assert kwargs["revision"] == "v1"
    assert kwargs["dtype"] == "bfloat16"
    assert kwargs["attn_implementation"] == "eager"
    assert kwargs["trust_remote_code"] is False
    assert kwargs["use_safetensors"] is True
    assert kwargs["device_map"] is None


def test_init_kwargs_user_keys_win(tmp_path):
    training_args = DPOConfig(output_dir=str(tmp_path), bf16=False, model_init_kwargs={"device_map": "auto", "low_cpu_mem_usage": True})
    kwargs = trl_model_init_kwargs(ModelConfig(attn_implementation="sdpa"), training_args)
    assert kwargs["device_map"] == "auto"
    assert kwargs["low_cpu_mem_usage"] is True
    assert kwargs["attn_implementation"] == "sdpa"
