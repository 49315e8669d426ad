"""Model cards for the recipes' output folders: Hub metadata, training settings, use and results.

A card is a README.md with a YAML header (license, tags, ``base_model``,
``datasets``), built with ``huggingface_hub.ModelCard``. The tile-language parts
(the description of the grammar, a tile prompt, the results section) appear only
when the tokenizer is the tile tokenizer, so the same recipes document any model.
"""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path

import datasets
import httpx2
import tokenizers
import torch
import transformers
import trl
from huggingface_hub import ModelCard, ModelCardData
from transformers import PreTrainedTokenizerBase, Trainer

from rgb_tokenizer.validation import is_tile_tokenizer

logger = logging.getLogger(__name__)

TILES_PICTURE = "tiles.png"
RESULTS_START = "<!-- rgb-alignment results: start -->"
RESULTS_END = "<!-- rgb-alignment results: end -->"
STAGES = {
    "pretrain": ("pretraining", "pretrained with the transformers Trainer"),
    "sft": ("SFT", "fine-tuned with supervised fine-tuning (TRL's SFTTrainer)"),
    "dpo": ("DPO", "fine-tuned with Direct Preference Optimization (TRL's DPOTrainer)"),
}
# Training settings shown in the card when the stage's arguments have them.
HYPERPARAMETERS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "max_length",
    "beta",
    "loss_type",
    "packing",
    "bf16",
    "seed",
)
FRAMEWORK_VERSIONS = {
    "Transformers": transformers.__version__,
    "TRL": trl.__version__,
    "PyTorch": torch.__version__,
    "Datasets": datasets.__version__,
    "Tokenizers": tokenizers.__version__,
}
TILE_LANGUAGE = (
    "It writes sequences in the tile language of rgb-alignment: tiles `R`, `G` and `B`, where `R` must be "
    "followed by `G`, `G` by `B`, and `B` by `R` or `G`. The preference score of a sequence is the share of its "
    "transitions that are `B→G`, and rule adherence is the share of transitions the grammar allows."
)


def is_hub_id(name: str) -> bool:
    """Return True when ``name`` is not a local path, so the loaders took it as a Hub id."""
    return not Path(name).exists()


def base_model_license(base_model: str) -> str | None:
    """Return the license in the base model's card, local or on the Hub, or None when there is none."""
    card_path = Path(base_model) / "README.md"
    try:
        card = ModelCard.load(card_path if card_path.is_file() else base_model, ignore_metadata_errors=True)
    except (OSError, ValueError, httpx2.HTTPError):
        # No card, a local folder without README.md, or no network: the license stays unknown.
        return None
    return card.data.license


def hyperparameters(trainer: Trainer) -> dict[str, str]:
    """Return the key training settings and outcomes of ``trainer`` as table rows."""
    args = trainer.args
    rows = {}
    for name in HYPERPARAMETERS:
        value = getattr(args, name, None)
        if value is None or (name == "max_steps" and value <= 0):
            continue
        if isinstance(value, Enum):
            value = value.value
        if isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        rows[name] = f"{value:g}" if isinstance(value, float) else str(value)
    rows["total batch size"] = str(args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size)
    rows["optimizer steps"] = str(trainer.state.global_step)
    # The logged step losses survive a resume because the checkpoint's trainer state keeps them.
    # The trainer's closing train_loss does not, so a rerun of a finished run would report 0.0.
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        rows["last logged training loss"] = f"{losses[-1]:.4f}"
    return rows


def usage_snippet(model_ref: str, tokenizer: PreTrainedTokenizerBase, tile_model: bool) -> str:
    """Return three lines of Python that load the model with a pipeline and sample from it."""
    if tile_model:
        prompt, call, output = '"B"', "max_new_tokens=39, do_sample=True", '[0]["generated_text"]'
    elif tokenizer.chat_template:
        prompt, call, output = '[{"role": "user", "content": "Hello!"}]', "max_new_tokens=128", '[0]["generated_text"][-1]["content"]'
    else:
        prompt, call, output = '"Once upon a time"', "max_new_tokens=64, do_sample=True", '[0]["generated_text"]'
    return (
        "```python\n"
        "from transformers import pipeline\n"
        f'generator = pipeline("text-generation", model="{model_ref}")\n'
        f"print(generator({prompt}, {call}){output})\n"
        "```"
    )


def link(name: str, repo_type: str = "model") -> str:
    """Return a Markdown link for a Hub id, or the local path in code style."""
    if not is_hub_id(name):
        return f"`{name}` (local folder)"
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"[{name}](https://huggingface.co/{prefix}{name})"


def model_card_data(
    stage: str, base_model: str | None, dataset_names: list[str], tile_model: bool, output_dir: str
) -> ModelCardData:
    """Return the card's YAML metadata: license, tags, and the base model and datasets that are Hub ids."""
    license_name = base_model_license(base_model) if base_model else None
    if license_name is None and tile_model:
        license_name = "mit"  # the license of this project and of its tile datasets
    if license_name is None:
        logger.warning("No license found in the base model's card: set `license` in %s/README.md before sharing", output_dir)

    tags = ["rgb-alignment", stage]
    if stage != "pretrain":
        tags.append("trl")
    if tile_model:
        tags.append("tile-language")
    hub_datasets = [dataset for dataset in dataset_names if is_hub_id(dataset)]
    return ModelCardData(
        license=license_name,
        library_name="transformers",
        pipeline_tag="text-generation",
        base_model=base_model if base_model and is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
        tags=tags,
    )


def render_model_card(
    trainer: Trainer,
    stage: str,
    base_model: str | None,
    dataset_names: list[str],
    repo_id: str | None = None,
) -> ModelCard:
    """Build the card of the model that ``trainer`` trained.

    ``base_model`` is the starting checkpoint (None when trained from scratch) and
    ``repo_id`` the Hub repo the model goes to, if any. Hub ids become links and
    YAML metadata, and local paths are named as local folders.
    """
    output_dir = str(trainer.args.output_dir)
    tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
    tile_model = is_tile_tokenizer(tokenizer)
    stage_name, stage_description = STAGES[stage]
    name = (repo_id or os.path.basename(os.path.normpath(output_dir))).split("/")[-1]
    model = trainer.accelerator.unwrap_model(trainer.model)

    card_data = model_card_data(stage, base_model, dataset_names, tile_model, output_dir)

    origin = f"from {link(base_model)}" if base_model else "from randomly initialised weights"
    summary = (
        f"A {type(model).__name__} with {model.num_parameters():,} parameters, {stage_description} "
        f"{origin} on {', '.join(link(dataset, 'dataset') for dataset in dataset_names)}."
    )
    trainer_library = f"transformers {transformers.__version__}" if stage == "pretrain" else f"TRL {trl.__version__}"
    settings = {
        "stage": f"{stage_name} ({trainer_library})",
        "base model": link(base_model) if base_model else "none (trained from scratch)",
        "datasets": ", ".join(link(dataset, "dataset") for dataset in dataset_names),
        **hyperparameters(trainer),
    }
    sections = [
        f"# {name}",
        summary + (f"\n\n{TILE_LANGUAGE}" if tile_model else ""),
        "## Use",
        usage_snippet(repo_id or output_dir, tokenizer, tile_model),
        "## Training",
        "| setting | value |\n|---|---|\n" + "\n".join(f"| {key} | {value} |" for key, value in settings.items()),
    ]
    if tile_model:
        placeholder = (
            "Not measured yet: `python recipes/compare.py --config recipes/config/compare.yaml "
            "--update_model_cards true` writes the comparison table and a picture of samples here."
        )
        sections += ["## Results", f"{RESULTS_START}\n{placeholder}\n{RESULTS_END}"]
    sections += [
        "## Framework versions",
        "\n".join(f"- {package}: {version}" for package, version in FRAMEWORK_VERSIONS.items()),
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def write_model_card(
    trainer: Trainer,
    stage: str,
    base_model: str | None,
    dataset_names: list[str],
    repo_id: str | None = None,
) -> Path:
    """Write the card into the trainer's output_dir as README.md, replacing TRL's draft, and return its path.

    When the training table is unchanged (a rerun that found its run finished),
    the results section and picture of an earlier comparison are kept. Otherwise
    the picture shows an older model and is removed with the card that referenced it.
    """
    output_dir = Path(trainer.args.output_dir)
    card = render_model_card(trainer, stage, base_model, dataset_names, repo_id)
    path = output_dir / "README.md"
    previous = path.read_text() if path.is_file() else ""
    same_model = _training_table(previous) == _training_table(card.text)
    if RESULTS_START in previous and RESULTS_START in card.text and same_model:
        # A rerun that found the run finished saves the same model: its results still hold.
        results = previous[previous.index(RESULTS_START) : previous.index(RESULTS_END) + len(RESULTS_END)]
        before, _, rest = card.text.partition(RESULTS_START)
        card = ModelCard(f"---\n{card.data.to_yaml()}\n---\n{before}{results}{rest.partition(RESULTS_END)[2]}")
    else:
        (output_dir / TILES_PICTURE).unlink(missing_ok=True)
    card.save(path)
    logger.info("Wrote the model card %s", path)
    return path


def _training_table(card_text: str) -> str:
    """Return the card's training settings table, which identifies the trained model."""
    return card_text.partition("## Training")[2].partition("\n## ")[0].strip()


def with_results(card: ModelCard, results_markdown: str, row_name: str) -> ModelCard:
    """Return ``card`` with its results section set to ``results_markdown`` and the tiles picture.

    The section between the results markers is replaced, so refreshing twice
    keeps one copy. A card without the markers gets the section at its end.
    """
    section = (
        f"{RESULTS_START}\n"
        f"`recipes/compare.py` sampled every model of the run from the same prompt tiles. "
        f"This model is the **{row_name.upper()}** row.\n\n"
        f"{results_markdown.strip()}\n\n"
        f"![The first samples of each model, one row of tiles per sample]({TILES_PICTURE})\n"
        f"{RESULTS_END}"
    )
    text = card.text
    if RESULTS_START in text and RESULTS_END in text:
        before, _, rest = text.partition(RESULTS_START)
        _, _, after = rest.partition(RESULTS_END)
        text = before + section + after
    else:
        text = text.rstrip() + f"\n\n## Results\n\n{section}\n"
    return ModelCard(f"---\n{card.data.to_yaml()}\n---\n{text}")


def empty_model_card() -> ModelCard:
    """Return a card with Hub metadata only, for a model folder that has none."""
    card_data = ModelCardData(library_name="transformers", pipeline_tag="text-generation", tags=["rgb-alignment"])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n")
