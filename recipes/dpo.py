"""Direct Preference Optimization with TRL's DPOTrainer, starting from the pretrained base model.

    accelerate launch recipes/dpo.py --config recipes/config/dpo.yaml
    accelerate launch recipes/dpo.py --config recipes/config/dpo.yaml --beta 0.05 --output_dir outputs/dpo-beta0.05

The policy and the reference model are both loaded from `model_name_or_path`,
so the reference model is the frozen starting point of the policy.
A rerun with the same output_dir resumes from its last complete checkpoint.
"""

from __future__ import annotations

import logging

import torch
from accelerate.logging import get_logger
from datasets import load_dataset
from transformers import set_seed
from trl import DPOConfig, DPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config

from rgb_tokenizer.checkpoints import last_complete_checkpoint, save_final_model
from rgb_tokenizer.devices import DeviceArguments, apply_device_settings

logger = get_logger(__name__)


def main(
    script_args: ScriptArguments,
    training_args: DPOConfig,
    model_args: ModelConfig,
    device_args: DeviceArguments,
) -> None:
    training_args = apply_device_settings(training_args, device_args.mixed_precision)
    set_seed(training_args.seed)
    for arguments in (script_args, model_args, device_args, training_args):
        logger.info(f"{type(arguments).__name__}: {arguments}")

    # The trainer loads the policy and the reference model from this path, with these settings
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        "trust_remote_code": training_args.trust_remote_code,
        **(training_args.model_init_kwargs or {}),
    }

    # Dataset: a local folder or a Hub id with prompt/chosen/rejected columns
    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    logger.info(f"Dataset {script_args.dataset_name}: " + ", ".join(f"{k} {len(v):,}" for k, v in dataset.items()))
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = dataset[script_args.dataset_test_split]

    # Train, resuming from the last complete checkpoint of an interrupted run
    trainer = DPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
    )
    if script_args.ignore_bias_buffers:
        # DDP cannot broadcast boolean buffers (such as attention masks), so leave them out.
        trainer.model._ddp_params_and_buffers_to_ignore = [
            name for name, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool
        ]
    checkpoint = training_args.resume_from_checkpoint or last_complete_checkpoint(training_args.output_dir)
    if checkpoint:
        logger.info(f"Resuming from {checkpoint}")
    trainer.train(resume_from_checkpoint=checkpoint)

    save_final_model(trainer, training_args.output_dir)
    logger.info(f"Saved the DPO policy to {training_args.output_dir}")


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = TrlParser((ScriptArguments, DPOConfig, ModelConfig, DeviceArguments))
    # Precision is chosen by --mixed_precision once the device is known; TRL's
    # bf16=True default would fail to parse on a CPU without bf16 support.
    parser.set_defaults(bf16=False)
    main(*parser.parse_args_and_config())
