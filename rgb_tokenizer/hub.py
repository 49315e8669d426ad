"""Pushing saved models and datasets to the Hugging Face Hub, with errors a user can act on.

The recipes push once, after the final local save, so a failed push never costs
a trained model. ``HubError`` carries a one-line message with the cause and the
fix, and the recipe exits with it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, RemoteEntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from transformers import Trainer, TrainingArguments

from rgb_tokenizer.cards import TILES_PICTURE, empty_model_card, is_hub_id, with_results, write_model_card
from rgb_tokenizer.errors import UserError, exit_on_error

logger = logging.getLogger(__name__)

ArgsT = TypeVar("ArgsT", bound=TrainingArguments)

# Checkpoints stay local, and so do pickles: training_args.bin, optimizer and RNG
# states. The weights themselves are model.safetensors.
MODEL_IGNORE_PATTERNS = ["checkpoint-*", ".*", "*.bin", "*.pt", "*.pth", "*.pkl", "runs/*"]
TOKEN_URL = "https://huggingface.co/settings/tokens"


class HubError(RuntimeError):
    """A push that failed, with a one-line message naming the repo and the fix."""


@dataclass(frozen=True)
class HubTarget:
    """The destination of a push: a repo id, its visibility if it is created, and a token (None: the login token)."""

    repo_id: str
    private: bool | None = None
    token: str | None = field(default=None, repr=False)


def check_repo_id(repo_id: str, setting: str, value: str | None = None) -> None:
    """Raise UserError naming ``setting`` and its ``value`` when ``repo_id`` cannot name a Hub repo.

    ``value`` defaults to ``repo_id``. It differs when the setting is a prefix of the repo id.
    """
    setting_value = repo_id if value is None else value
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(
            f"{setting}={setting_value!r} does not give a valid Hub repo id ({repo_id!r}): "
            "use namespace/name with letters, digits, '-', '_' or '.', for example me/rgb-sft"
        ) from None


def hub_target(training_args: TrainingArguments) -> HubTarget | None:
    """Return where the trainer's ``push_to_hub`` settings point, or None when pushing is off.

    Like the Trainer, an unset ``hub_model_id`` means a repo named after ``output_dir``
    in the token owner's namespace.
    """
    if not training_args.push_to_hub:
        return None
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).absolute().name
    check_repo_id(repo_id, "hub_model_id")
    if not (training_args.hub_token or get_token()):
        logger.warning(
            "push_to_hub is set but no Hugging Face token was found: training runs, but the push at the end "
            "will fail unless you run `hf auth login` or set HF_TOKEN before then"
        )
    return HubTarget(repo_id, training_args.hub_private_repo, training_args.hub_token)


def without_hub_settings(training_args: ArgsT) -> ArgsT:
    """Return ``training_args`` with the trainer's own pushing off and the token removed.

    The recipe pushes once, after the final save. Left on, the Trainer would
    create the repo before training, push every checkpoint, and pickle the token
    into training_args.bin.
    """
    # NOTE: so hub_strategy and hub_revision have no effect: the final folder is
    # pushed to the default branch, and checkpoints are never pushed.
    return dataclasses.replace(training_args, push_to_hub=False, hub_token=None)


def resolve_token(target: HubTarget, source: str) -> str:
    """Return the token to push ``source`` with, or raise HubError when there is none."""
    token = target.token or get_token()
    if not token:
        raise HubError(
            f"Pushing {source} to {target.repo_id} failed: no Hugging Face token was found. Run `hf auth login` "
            f"or set HF_TOKEN to a write token from {TOKEN_URL}."
        )
    return token


def describe_failure(error: Exception) -> str:
    """Return why a push failed and what to do, as one line of full sentences."""
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so the Hub was not contacted. Unset it."
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        if status == 401:
            return f"the Hub rejected the token (401 Unauthorized). Create a write token at {TOKEN_URL} and run `hf auth login`."
        if status == 403:
            return "the token may not write to this repo (403 Forbidden). Use a token with write access to its namespace."
        detail = (error.server_message or str(error)).strip().splitlines()[0]
        return f"the Hub answered {status} ({detail}). Check the repo id."
    if isinstance(error, (httpx2.HTTPError, ConnectionError, TimeoutError)):
        return f"the Hub could not be reached ({type(error).__name__}). Check the network connection."
    return f"{type(error).__name__}: {error}."


def upload_command(repo_id: str, folder: Path, repo_type: str) -> str:
    """Return the `hf upload` command that pushes ``folder`` by hand, for error messages."""
    if repo_type == "dataset":
        return f"hf upload {repo_id} {folder} . --repo-type dataset"
    return f"hf upload {repo_id} {folder} . --exclude 'checkpoint-*' --exclude '*.bin'"


def push_folder(
    folder: str | os.PathLike,
    target: HubTarget,
    repo_type: str = "model",
    before_upload: Callable[[str], None] | None = None,
    retry: str | None = None,
) -> str:
    """Create the repo if needed, upload ``folder`` to it and return the full repo id.

    Model folders are uploaded without checkpoints or pickles, dataset folders whole.
    ``before_upload`` gets the full repo id once the repo exists, which differs
    from ``target.repo_id`` when that has no namespace. On any failure, raises
    HubError with the reason and ``retry``, which defaults to the `hf upload`
    command that pushes the folder, since the local files are complete by then.
    """
    folder = Path(folder)
    if retry is None:
        retry = f"The saved files in {folder} are complete: push them with `{upload_command(target.repo_id, folder, repo_type)}`."
    try:
        token = resolve_token(target, str(folder))
    except HubError as error:
        raise HubError(f"{error} {retry}") from None

    api = HfApi()
    try:
        repo_url = api.create_repo(
            target.repo_id, token=token, private=target.private, repo_type=repo_type, exist_ok=True
        )
        if before_upload is not None:
            before_upload(repo_url.repo_id)
        api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=folder,
            repo_type=repo_type,
            token=token,
            commit_message=f"Upload {folder.name} with rgb-alignment",
            # A copy: upload_folder extends the list it is given.
            ignore_patterns=list(MODEL_IGNORE_PATTERNS) if repo_type == "model" else None,
        )
    except (OSError, httpx2.HTTPError) as error:
        # OSError covers HfHubHTTPError, OfflineModeIsEnabled and local file errors.
        raise HubError(f"Pushing {folder} to {target.repo_id} failed: {describe_failure(error)} {retry}") from error
    prefix = "datasets/" if repo_type == "dataset" else ""
    logger.info("Pushed %s to https://huggingface.co/%s%s", folder, prefix, repo_url.repo_id)
    return repo_url.repo_id


def push_files(target: HubTarget, files: dict[str, bytes | Path], commit_message: str) -> None:
    """Commit ``files`` (path in repo: content) to the existing model repo ``target.repo_id`` in one commit."""
    source = ", ".join(files)
    token = resolve_token(target, source)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content in files.items()]
    try:
        HfApi().create_commit(repo_id=target.repo_id, operations=operations, commit_message=commit_message, token=token)
    except (OSError, httpx2.HTTPError) as error:
        raise HubError(f"Pushing {source} to {target.repo_id} failed: {describe_failure(error)}") from error
    logger.info("Pushed %s to https://huggingface.co/%s", source, target.repo_id)


def publish_model(
    trainer: Trainer,
    stage: str,
    base_model: str | None,
    dataset_names: list[str],
    target: HubTarget | None,
) -> None:
    """Write the model card into the saved output_dir, then push the folder to ``target`` if set.

    Runs on the main process only. Raises HubError when the push fails, and
    the saved model and its card stay in place.
    """
    if not trainer.args.should_save:
        return
    write_model_card(trainer, stage, base_model, dataset_names, target.repo_id if target else None)
    if target is None:
        return

    def name_full_repo_id(repo_id: str) -> None:
        # The Hub puts a bare repo name under the token owner's namespace: the card's snippet needs the full id.
        if repo_id != target.repo_id:
            write_model_card(trainer, stage, base_model, dataset_names, repo_id)

    push_folder(trainer.args.output_dir, target, before_upload=name_full_repo_id)


def exit_on_hub_error():
    """Turn a ``HubError`` raised in the block into its one-line message on stderr and exit status 1."""
    return exit_on_error(HubError, 1)


def publish_results(
    model: str,
    row_name: str,
    results_markdown: str,
    picture: Path,
    update_local: bool,
    push: bool,
) -> None:
    """Write the comparison results into the model card of ``model``, a local folder or a Hub id.

    A local folder gets its README.md section and a copy of ``picture`` when
    ``update_local`` is set. A Hub model gets both in one commit when ``push``
    is set, and is left as it is otherwise. Raises HubError when that commit fails.
    """
    if not is_hub_id(model):
        if not update_local:
            return
        folder = Path(model)
        card_path = folder / "README.md"
        card = ModelCard.load(card_path) if card_path.is_file() else empty_model_card()
        with_results(card, results_markdown, row_name).save(card_path)
        shutil.copyfile(picture, folder / TILES_PICTURE)
        logger.info("Wrote the results into the model card %s", card_path)
        return
    if not push:
        logger.info("Left the card of the Hub model %s as it is: pass --push_to_hub true to commit the results to it", model)
        return

    target = HubTarget(model)
    token = resolve_token(target, "README.md")
    try:
        card = ModelCard.load(model, token=token)
    except RemoteEntryNotFoundError:
        card = empty_model_card()
    except (OSError, httpx2.HTTPError) as error:
        raise HubError(f"Reading the model card of {model} failed: {describe_failure(error)}") from error
    card = with_results(card, results_markdown, row_name)
    push_files(target, {"README.md": str(card).encode(), TILES_PICTURE: picture}, "Add the rgb-alignment comparison results")
