"""The one output-folder policy of every minialbert command (`convert`, `distill`, `export-onnx`, `import-published`
and the fine-tuning examples), and the one way a command reads a student folder it is given.

Before any work starts, an absent or empty `output_dir` is used as is; one holding a Trainer checkpoint is resumed
by the commands that train; any other non-empty folder is refused unless `--overwrite_output_dir`. A refused
folder is never touched.
"""

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PretrainedConfig
from transformers.trainer_utils import get_last_checkpoint

from .configuration_minialbert import MiniAlbertConfig

logger = logging.getLogger(__name__)


@dataclass
class OutputArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a non-empty output_dir instead of refusing it or resuming from its last checkpoint "
            "(convert replaces it only once the new student is complete)."
        },
    )


def prepare_output_dir(
    output_dir: str | os.PathLike, overwrite: bool, is_main_process: bool = True, resumable: bool = True
) -> str | None:
    """Apply the policy to `output_dir`; return the checkpoint to resume from, if any.

    `resumable`: the command trains with the Trainer and can resume (with `overwrite`, its main process deletes the
    old folder first, as training writes into it step by step); otherwise the command writes its output at once and
    replaces an overwritten folder itself, atomically (`write_folder`).
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"Output path {str(path)!r} is a file; choose a folder.")
    if not path.is_dir() or not any(path.iterdir()):
        return None
    if overwrite:
        if resumable and is_main_process:
            shutil.rmtree(path)
        return None
    checkpoint = get_last_checkpoint(str(path)) if resumable else None
    if checkpoint is None:
        what = "is not empty and holds no checkpoint to resume from" if resumable else "is not empty"
        raise ValueError(f"Output folder {str(path)!r} {what}; choose another folder or pass --overwrite_output_dir.")
    logger.info("Resuming from %s (pass --overwrite_output_dir to start over).", checkpoint)
    return checkpoint


def write_folder(output_dir: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Have `write` fill a new folder and put it at `output_dir` atomically: it appears complete or not at all,
    and an overwritten folder is only deleted once the new one is in its place (until then it waits beside it,
    and comes back on any failure)."""
    prepare_output_dir(output_dir, overwrite, resumable=False)
    path = Path(output_dir).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new.", dir=path.parent))
    previous = None
    try:
        write(staging)
        if path.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, previous)
        os.replace(staging, path)
    except BaseException:
        if previous is not None:
            if path.exists():  # the old folder never moved: its place-holder is empty
                previous.rmdir()
            else:
                os.replace(previous, path)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous)
    return path


def read_minialbert_config(
    name_or_path: str | os.PathLike, subject: str, fix: str, revision: str | None = None
) -> MiniAlbertConfig:
    """The MiniAlbert config of a folder or Hub id, its config.json read as data (no code stored with it runs).

    Anything else is a ValueError "`subject` holds a 'bert' model, not a MiniAlbert one; `fix`" (or says that it has
    no readable config.json), `subject` and `fix` written by the caller for its own option and command.
    """
    try:
        values, _ = PretrainedConfig.get_config_dict(str(name_or_path), revision=revision)
    except OSError as error:
        raise ValueError(f"{subject} has no readable config.json ({error}); {fix}") from error
    if not values:
        raise ValueError(f"{subject} has no config.json; {fix}")
    if values.get("model_type") != MiniAlbertConfig.model_type:
        raise ValueError(f"{subject} holds a {values.get('model_type')!r} model, not a MiniAlbert one; {fix}")
    return MiniAlbertConfig.from_dict(values)
