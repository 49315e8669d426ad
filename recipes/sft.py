"""Supervised fine-tuning with TRL's SFTTrainer, starting from the pretrained base model.

    accelerate launch recipes/sft.py --config recipes/config/sft.yaml
    accelerate launch recipes/sft.py --config recipes/config/sft.yaml \
        --model_name_or_path outputs/base --dataset_name outputs/data/sft --output_dir outputs/sft

With `prompt`/`completion` columns the loss covers the completion only.
A rerun with the same settings and output_dir resumes from its last complete checkpoint.
A run with other settings into that output_dir needs --overwrite_output_dir.
"""

from __future__ import annotations

import logging

from accelerate.logging import get_logger
from transformers import set_seed
from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from rgb_tokenizer import hub
from rgb_tokenizer.arguments import parse_recipe_args
from rgb_tokenizer.checkpoints import last_complete_checkpoint, save_final_model, train_from_checkpoint
from rgb_tokenizer.devices import DeviceArguments, apply_device_settings
from rgb_tokenizer.errors import exit_on_user_error
from rgb_tokenizer.model_loading import trl_model_init_kwargs
from rgb_tokenizer.runs import RunArguments, claim_output_dir, run_record
from rgb_tokenizer.validation import SFT, check_attn_implementation, check_causal_lm, check_training_arguments, load_trl_dataset

logger = get_logger(__name__)


def main(
    script_args: ScriptArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    device_args: DeviceArguments,
    run_args: RunArguments | None = None,
) -> None:
    training_args = apply_device_settings(training_args, device_args.mixed_precision)
    # The recipe pushes once, after the final save: the trainer itself never pushes or stores the token.
    hub_target = hub.hub_target(training_args)
    training_args = hub.without_hub_settings(training_args)
    set_seed(training_args.seed)
    for arguments in (script_args, model_args, device_args, training_args):
        logger.info(f"{type(arguments).__name__}: {arguments}")

    # The trainer loads the policy from this path, with these settings
    training_args.model_init_kwargs = trl_model_init_kwargs(model_args, training_args)

    # Check the settings and the model before any work starts
    check_training_arguments(training_args)
    check_attn_implementation(model_args.attn_implementation)
    checked_model = check_causal_lm(model_args.model_name_or_path, model_args.model_revision, training_args.trust_remote_code)

    # Dataset: a local folder or a Hub id, in TRL's prompt/completion or messages format, checked row by row
    dataset = load_trl_dataset(script_args, training_args, SFT, checked_model)
    logger.info(f"Dataset {script_args.dataset_name}: " + ", ".join(f"{k} {len(v):,}" for k, v in dataset.items()))
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = dataset[script_args.dataset_test_split]

    # The output folder: a rerun with the same settings resumes, another run needs --overwrite_output_dir
    record = run_record("sft", script_args, training_args, model_args, device_args)
    claim_output_dir(training_args.output_dir, record, (run_args or RunArguments()).overwrite_output_dir)

    # Train, resuming from the last complete checkpoint of an interrupted run
    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=eval_dataset,
        peft_config=get_peft_config(model_args),
    )
    checkpoint = training_args.resume_from_checkpoint or last_complete_checkpoint(training_args.output_dir)
    if checkpoint:
        logger.info(f"Resuming from {checkpoint}")
    train_from_checkpoint(trainer, checkpoint)

    save_final_model(trainer, training_args.output_dir)
    logger.info(f"Saved the SFT model to {training_args.output_dir}")

    # Write the model card, then push. A failed push ends the run with one line and leaves the saved model in place.
    with hub.exit_on_hub_error():
        hub.publish_model(trainer, "sft", model_args.model_name_or_path, [script_args.dataset_name], hub_target)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DeviceArguments, RunArguments))
    # Precision is chosen by --mixed_precision once the device is known; TRL's
    # bf16=True default would fail to parse on a CPU without bf16 support.
    parser.set_defaults(bf16=False)
    with exit_on_user_error():
        main(*parse_recipe_args(parser))
