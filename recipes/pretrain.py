"""Pretrain a small GPT-2 from scratch on grammatical tile sequences.

    accelerate launch recipes/pretrain.py --config recipes/config/pretrain.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_cpu.yaml \
        recipes/pretrain.py --config recipes/config/pretrain.yaml --output_dir outputs/base

Settings come from the YAML file; any flag on the command line overrides it.
A rerun with the same settings and output_dir resumes from its last complete checkpoint.
A run with other settings into that output_dir needs --overwrite_output_dir.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.logging import get_logger
from transformers import (
    AutoModelForCausalLM,
    DataCollatorForLanguageModeling,
    GPT2Config,
    GenerationConfig,
    Trainer,
    TrainingArguments,
    set_seed,
)
from trl import TrlParser

from rgb_tokenizer import hub
from rgb_tokenizer.arguments import parse_recipe_args
from rgb_tokenizer.atomic import write_json_atomically
from rgb_tokenizer.checkpoints import last_complete_checkpoint, save_final_model, train_from_checkpoint
from rgb_tokenizer.devices import DeviceArguments, apply_device_settings
from rgb_tokenizer.errors import exit_on_user_error
from rgb_tokenizer.runs import RunArguments, claim_output_dir, run_record
from rgb_tokenizer.tokenizer import build_tokenizer
from rgb_tokenizer.validation import (
    LANGUAGE_MODELING,
    CheckedModel,
    check_attn_implementation,
    check_dataset,
    check_gpt2_settings,
    check_training_arguments,
    load_checked_dataset,
)

logger = get_logger(__name__)


@dataclass
class PretrainArguments:
    dataset_name: str = field(default="outputs/data/pretrain", metadata={"help": "Local folder or Hub id of a dataset with a `text` column."})
    n_layer: int = field(default=6, metadata={"help": "Transformer blocks."})
    n_head: int = field(default=4, metadata={"help": "Attention heads per block."})
    n_embd: int = field(default=256, metadata={"help": "Embedding width."})
    n_positions: int = field(default=64, metadata={"help": "Longest sequence the model accepts, in tokens (BOS and EOS included)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout probability of embeddings, attention and residual layers (GPT-2's default is 0.1)."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention implementation for training, such as 'eager' or 'sdpa'; unset, transformers picks (sdpa)."}
    )


def main(
    script_args: PretrainArguments,
    training_args: TrainingArguments,
    device_args: DeviceArguments,
    run_args: RunArguments | None = None,
) -> None:
    training_args = apply_device_settings(training_args, device_args.mixed_precision)
    # The recipe pushes once, after the final save: the trainer itself never pushes or stores the token.
    hub_target = hub.hub_target(training_args)
    training_args = hub.without_hub_settings(training_args)
    set_seed(training_args.seed)
    logger.info(f"Script arguments: {script_args}")
    logger.info(f"Training arguments: {training_args}")

    # Check the settings, the dataset and the output folder before any work starts
    check_gpt2_settings(script_args.n_layer, script_args.n_head, script_args.n_embd, script_args.n_positions, script_args.dropout)
    check_attn_implementation(script_args.attn_implementation)
    check_training_arguments(training_args)
    tokenizer = build_tokenizer()
    new_model = CheckedModel("a new GPT-2", tokenizer, script_args.n_positions)
    dataset = load_checked_dataset(script_args.dataset_name, splits={"train": "dataset_name"})
    for split in dataset:
        check_dataset(dataset[split], LANGUAGE_MODELING, new_model, where=f"split {split!r} of {script_args.dataset_name}")
    record = run_record("pretrain", script_args, training_args, device_args)
    claim_output_dir(training_args.output_dir, record, (run_args or RunArguments()).overwrite_output_dir)

    # A fresh model whose special tokens match the tokenizer
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=script_args.n_positions,
        n_embd=script_args.n_embd,
        n_layer=script_args.n_layer,
        n_head=script_args.n_head,
        resid_pdrop=script_args.dropout,
        embd_pdrop=script_args.dropout,
        attn_pdrop=script_args.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation=script_args.attn_implementation)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    logger.info(f"Model: GPT-2 with {model.num_parameters():,} parameters")

    # Dataset: each text becomes BOS + tiles + EOS, so the model learns where sequences end
    with training_args.main_process_first(desc="tokenizing"):
        dataset = dataset.map(
            lambda batch: {"input_ids": [ids + [tokenizer.eos_token_id] for ids in tokenizer(batch["text"])["input_ids"]]},
            batched=True,
            remove_columns=dataset["train"].column_names,
        )
    logger.info(f"Dataset {script_args.dataset_name}: " + ", ".join(f"{k} {len(v):,}" for k, v in dataset.items()))

    # Train, resuming from the last complete checkpoint of an interrupted run
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["test"] if training_args.eval_strategy != "no" else None,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        processing_class=tokenizer,
    )
    checkpoint = training_args.resume_from_checkpoint or last_complete_checkpoint(training_args.output_dir)
    if checkpoint:
        logger.info(f"Resuming from {checkpoint}")
    train_from_checkpoint(trainer, checkpoint)

    # Save the final model next to its checkpoints
    if "test" in dataset:
        metrics = trainer.evaluate(dataset["test"])
        trainer.log_metrics("eval", metrics)
        # Not trainer.save_metrics, which rewrites eval_results.json in place: a crash mid-write would truncate it.
        if trainer.is_world_process_zero():
            write_json_atomically(Path(training_args.output_dir) / "eval_results.json", metrics)
    save_final_model(trainer, training_args.output_dir)
    logger.info(f"Saved the base model to {training_args.output_dir}")

    # Write the model card, then push. A failed push ends the run with one line and leaves the saved model in place.
    with hub.exit_on_hub_error():
        hub.publish_model(trainer, "pretrain", None, [script_args.dataset_name], hub_target)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = TrlParser((PretrainArguments, TrainingArguments, DeviceArguments, RunArguments))
    # Precision is chosen by --mixed_precision once the device is known; TRL's
    # bf16=True default would fail to parse on a CPU without bf16 support.
    parser.set_defaults(bf16=False)
    with exit_on_user_error():
        main(*parse_recipe_args(parser))
