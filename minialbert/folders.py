"""The one output-folder policy of every minialbert command (`convert`, `distill`, `export-onnx`, `import-published`
and the fine-tuning examples), and the one way a command reads a student folder it is given.

Before any work starts, an absent or empty `output_dir` is used as is; one holding a Trainer checkpoint is resumed
by the commands that train, from the newest checkpoint that was written completely; any other non-empty folder is
refused unless `--overwrite_output_dir`. A refused folder is never touched, and an overwritten one is only
replaced once its replacement is complete: the commands that write at once build it in a staging folder
(`write_folder`), the commands that train train in a sibling folder (`TrainingOutput`). Either way a failure
leaves the old folder as it was and no staging folder behind.
"""

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PretrainedConfig, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_minialbert import MiniAlbertConfig

logger = logging.getLogger(__name__)


@dataclass
class OutputArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a non-empty output_dir instead of refusing it or resuming from its last checkpoint; "
            "the old content stays until the new result is complete."
        },
    )


def _check_is_not_a_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"Output path {str(path)!r} is a file; choose a folder.")


def _is_empty(path: Path) -> bool:
    return not path.is_dir() or not any(path.iterdir())


def _is_complete(checkpoint: Path) -> bool:
    # The Trainer writes trainer_state.json last, after the weights, optimiser, scheduler and RNG states.
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return f"{PREFIX_CHECKPOINT_DIR}-{state.get('global_step')}" == checkpoint.name


def _checkpoints(folder: Path) -> list[Path]:
    """`folder`'s checkpoint-N folders, newest (highest N) first."""
    found = [
        path
        for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if path.is_dir() and path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit()
    ]
    return sorted(found, key=lambda path: int(path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")), reverse=True)


def last_complete_checkpoint(folder: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """The newest checkpoint in `folder` that the Trainer finished writing (or None), and the newer ones that were
    cut off while being written (their process killed): those lack a readable trainer_state.json for their step
    and are never resumed from."""
    checkpoints = _checkpoints(Path(folder)) if Path(folder).is_dir() else []
    for position, checkpoint in enumerate(checkpoints):
        if _is_complete(checkpoint):
            return checkpoint, checkpoints[:position]
    return None, checkpoints


def _remove_cut_off(cut_off: list[Path], is_main_process: bool) -> None:
    for checkpoint in cut_off:
        logger.warning(
            "%s was cut off while being written: it is not resumed from%s.",
            checkpoint,
            ", and is removed" if is_main_process else "",
        )
        if is_main_process:
            shutil.rmtree(checkpoint)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """For the commands that write their output at once: refuse a non-empty `output_dir` unless `overwrite`."""
    path = Path(output_dir)
    _check_is_not_a_file(path)
    if not overwrite and not _is_empty(path):
        raise ValueError(
            f"Output folder {str(path)!r} is not empty; choose another folder or pass --overwrite_output_dir."
        )


def _swap_in(staging: Path, path: Path) -> None:
    """Put the complete folder `staging` at `path`; an old folder there is deleted only once `staging` is in its
    place (until then it waits beside it, and comes back on any failure)."""
    previous = None
    try:
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
        raise
    if previous is not None:
        shutil.rmtree(previous)


def _failed(error: OSError, action: str, path: Path, existed: bool) -> OSError:
    """`error` (a full disk, a read-only file system, ...) with the folder it hit and what was left there."""
    left = f"the previous {path} is unchanged" if existed else f"{path} was not created"
    # OSError(errno, ...) is the matching subclass again (PermissionError for EACCES, ...).
    return OSError(error.errno, f"{action} {path} failed ({error.strerror or error}); {left}.")


def write_folder(output_dir: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Have `write` fill a new folder and put it at `output_dir` atomically: it appears complete or not at all, and
    an overwritten folder is only deleted once the new one is in its place."""
    check_output_dir(output_dir, overwrite)
    path = Path(output_dir).resolve()
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new.", dir=path.parent))
    except OSError as error:
        raise _failed(error, "Writing", path, existed) from error
    try:
        write(staging)
        _swap_in(staging, path)
    except OSError as error:
        raise _failed(error, "Writing", path, existed) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


@dataclass
class TrainingOutput:
    """Where a Trainer job writes and what it resumes from (`prepare_training_output`).

    A new, empty or resumable `output_dir` is written in place. One replaced with `--overwrite_output_dir` keeps
    its content until the job completes: training writes into the sibling `working_dir` (`.NAME.overwrite`), which
    `writing` swaps in at the end; a job that fails there leaves the old folder as it was and removes the sibling,
    and a job killed outright leaves the sibling for the same command to resume from.
    """

    output_dir: Path
    working_dir: Path
    resume_from: str | None
    is_main_process: bool = True

    @contextmanager
    def writing(self, args: TrainingArguments) -> Iterator[None]:
        """Point `args.output_dir` at `working_dir` for the block (training, saving, evaluating) and, once it
        ends without error, put the result at `output_dir` (the main process does; any other process leaves)."""
        replacing = self.working_dir != self.output_dir
        args.output_dir = str(self.working_dir)
        try:
            yield
            if replacing and self.is_main_process:
                _swap_in(self.working_dir, self.output_dir)
        except BaseException as error:
            if not replacing:
                raise  # what was written so far stays, to resume from
            if self.is_main_process:
                shutil.rmtree(self.working_dir, ignore_errors=True)
            if isinstance(error, OSError):
                raise _failed(error, "Replacing", self.output_dir, existed=True) from error
            raise
        finally:
            args.output_dir = str(self.output_dir)


def prepare_training_output(
    output_dir: str | os.PathLike, overwrite: bool, is_main_process: bool = True
) -> TrainingOutput:
    """Apply the policy to a Trainer job's `output_dir` before any work: where it trains and what it resumes from.

    Only the main process deletes anything (an abandoned replacement, checkpoints cut off while being written).
    """
    path = Path(output_dir)
    _check_is_not_a_file(path)
    if overwrite and not _is_empty(path):
        working = path.parent / f".{path.name}.overwrite"
        checkpoint, cut_off = last_complete_checkpoint(working)
        if checkpoint is None and working.exists() and is_main_process:
            shutil.rmtree(working)  # an abandoned replacement with nothing to resume: start it over
        elif checkpoint is not None:
            _remove_cut_off(cut_off, is_main_process)
            logger.info(
                "Resuming the interrupted replacement of %s from %s (delete %s to start it over).",
                path,
                checkpoint,
                working,
            )
        return TrainingOutput(path, working, checkpoint and str(checkpoint), is_main_process)
    checkpoint, cut_off = last_complete_checkpoint(path)
    if checkpoint is None and not _is_empty(path) and set(path.iterdir()) != set(cut_off):
        raise ValueError(
            f"Output folder {str(path)!r} is not empty and holds no checkpoint to resume from; choose another "
            "folder or pass --overwrite_output_dir."
        )
    # Checkpoints cut off while being written are ours to remove, also where only they are left (the run starts over).
    _remove_cut_off(cut_off, is_main_process)
    if checkpoint is not None:
        logger.info("Resuming from %s (pass --overwrite_output_dir to start over).", checkpoint)
    return TrainingOutput(path, path, checkpoint and str(checkpoint), is_main_process)


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
