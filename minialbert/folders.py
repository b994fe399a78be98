"""The one output-folder policy of every minialbert command (`convert`, `distill`, `export`, `import-published`
and the fine-tuning examples), and the one way a command reads a folder or tokenizer it is given.

Before any work starts, the output path is checked (a file, an unwritable place, or a non-empty folder is refused;
the commands that train read what a non-empty folder holds first, `minialbert.training_runs`) and locked: one job
per output folder, the lock an OS-level one on `.NAME.lock` beside it (the file stays), released by the OS when a job
dies, so a killed job never blocks the next. A refused folder is never touched, and an overwritten one is only
replaced once its replacement is complete: the commands that write at once build it in a staging folder
(`write_folder`), the commands that train in a sibling folder. A swap killed half way is completed (or undone) by
the next job on the folder (`finish_interrupted_swap`).
"""

import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import filelock
from safetensors import SafetensorError
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from .configuration_minialbert import MiniAlbertConfig
from .errors import BadInputError, as_bad_input, folder_write_error
from .run_record import RunRecord

logger = logging.getLogger(__name__)

# What a student folder holds beside its config and weights: the code files `save_pretrained` copies for remote code,
# and the tokenizer's files (which of them a tokenizer writes varies).
CODE_FILES = ("configuration_minialbert.py", "modeling_minialbert.py")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)


@dataclass
class OutputArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a non-empty output_dir instead of refusing it or resuming from its last checkpoint; "
            "the old content stays until the new result is complete."
        },
    )


def check_is_not_a_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise BadInputError(f"Output path {str(path)!r} is a file; choose a folder.")


def check_writable(path: Path) -> None:
    """Refuse an output path nothing can be written at (a read-only mount, a folder without write permission),
    before any work: the nearest existing folder on the way must take a new file (one is made and removed)."""
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise BadInputError(
            f"Output folder {str(path)!r} cannot be written: {str(existing)!r} takes no new files "
            f"({error.strerror or error}); choose a writable location."
        ) from error


class OutputLock:
    """One job per output folder: an exclusive OS-level lock (`filelock`, flock on Unix) on `.NAME.lock` beside the
    folder, taken before anything is written and without waiting. The OS releases it when its process ends, killed
    or not, so a stale lock file never blocks the next job. Reentrant within a process (a command that claims its
    folder, then writes it through `write_folder`).

    The lock file follows filelock's rules (>= 3.30, the range setup.cfg declares): it stays in place after release,
    since deleting a lock file another job has opened splits the jobs across two files and lets both in; a job that
    loses the race opens it without truncating, so the holder's line (who holds it, for the refusal) survives."""

    held: dict[Path, "OutputLock"] = {}

    def __init__(self, output_dir: str | os.PathLike):
        self.folder = Path(output_dir).resolve()
        self.path = self.folder.parent / f".{self.folder.name}.lock"
        self.depth = 0
        self.lock = filelock.FileLock(self.path, timeout=0)

    @classmethod
    def acquire(cls, output_dir: str | os.PathLike) -> "OutputLock":
        """Lock `output_dir` for this process, or raise a BadInputError that names it and the job holding it."""
        lock = cls.held.get(Path(output_dir).resolve()) or cls(output_dir)
        if lock.depth == 0:
            try:
                lock.folder.parent.mkdir(parents=True, exist_ok=True)
                lock.lock.acquire()
            except filelock.Timeout:
                raise BadInputError(
                    f"Output folder {str(lock.folder)!r} is in use by another job ({lock.holder()}); wait for it to "
                    "end or choose another folder."
                ) from None
            except OSError as error:
                raise BadInputError(
                    f"Output folder {str(lock.folder)!r} cannot be written ({error.strerror or error}); choose a "
                    "writable location."
                ) from error
            with suppress(OSError), open(lock.path, "w") as record:  # who holds it, for the message above
                record.write(f"process {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)}")
            cls.held[lock.folder] = lock
        lock.depth += 1
        return lock

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "its process did not say which"
        except OSError:
            return "its process did not say which"

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            del self.held[self.folder]
            self.lock.release()


@contextmanager
def claim_output(output_dir: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """For the commands that write their output at once: check `output_dir` (`check_output_dir`) and hold its lock
    for the block, before the command loads anything heavy."""
    check_output_dir(output_dir, overwrite)
    lock = OutputLock.acquire(output_dir)
    try:
        finish_interrupted_swap(lock.folder)
        check_output_dir(output_dir, overwrite)  # again, where that put an old folder back
        yield lock.folder
    finally:
        lock.release()


@contextmanager
def reading_weights(subject: str, fix: str) -> Iterator[None]:
    """Turn weights that cannot be read (a truncated or corrupt safetensors file) into a BadInputError that names them
    (`subject`) and `fix`, as every other bad input is."""
    try:
        yield
    except SafetensorError as error:
        raise BadInputError(f"{subject}: its model.safetensors cannot be read ({error}); {fix}") from error


def is_empty(path: Path) -> bool:
    return not path.is_dir() or not any(path.iterdir())


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """For the commands that write their output at once: refuse a file, an unwritable place, or a non-empty
    `output_dir` unless `overwrite`."""
    path = Path(output_dir)
    check_is_not_a_file(path)
    if not overwrite and not is_empty(path):
        raise BadInputError(
            f"Output folder {str(path)!r} is not empty; choose another folder or pass --overwrite_output_dir."
        )
    check_writable(path)


def swap_in(staging: Path, path: Path) -> None:
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
    return folder_write_error(error.errno, f"{action} {path} failed ({error.strerror or error}); {left}.")


def write_folder(output_dir: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Have `write` fill a new folder and put it at `output_dir` atomically: it appears complete or not at all, and
    an overwritten folder is only deleted once the new one is in its place."""
    with claim_output(output_dir, overwrite) as path:
        existed = path.exists()
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.new.", dir=path.parent))
        except OSError as error:
            raise _failed(error, "Writing", path, existed) from error
        try:
            write(staging)
            swap_in(staging, path)
        except OSError as error:
            raise _failed(error, "Writing", path, existed) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path


def finish_interrupted_swap(path: Path) -> bool:
    """Complete or undo a swap (`swap_in`) a killed job left half done, and remove its leftovers: with `path` in
    place, the old folders beside it are leftovers; without it, a finished replacement (`.NAME.overwrite` with its
    record) goes in its place, else the old folder goes back. Staging folders of `write_folder` are leftovers.
    Returns whether `path` now holds the replacement such a swap was putting in place."""
    olds = sorted(path.parent.glob(f".{path.name}.old.*"), key=lambda old: old.stat().st_mtime)
    replacement = path.parent / f".{path.name}.overwrite"
    # An old folder moved aside (not the empty place-holder made before the move) means the swap went that far.
    swapped = any(not is_empty(old) for old in olds)
    if swapped and not path.exists():
        if RunRecord.read(replacement) is not None:
            os.replace(replacement, path)
            logger.warning("%s had been finished and not yet put in place (a job was killed): done now.", replacement)
        else:
            swapped = False
            os.replace(max(olds, key=lambda old: not is_empty(old)), path)
            olds = [old for old in olds if old.exists()]
            logger.warning("%s had been moved aside and not replaced (a job was killed): put back.", path)
    for leftover in [*olds, *path.parent.glob(f".{path.name}.new.*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    return swapped


def load_tokenizer(
    name_or_path: str | os.PathLike, subject: str, fix: str, revision: str | None = None
) -> PreTrainedTokenizerBase:
    """The tokenizer of a folder or Hub id, refused as bad input when none loads or when it holds no vocabulary
    (transformers builds an empty tokenizer, special tokens only, from a folder without tokenizer files); the
    message says what `subject` lacks and ends with `fix`."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), revision=revision)
    except (OSError, ValueError) as error:
        raise BadInputError(
            f"{subject} has no tokenizer that loads. Cannot load a tokenizer from {str(name_or_path)!r}: "
            f"{error}\n{fix}"
        ) from error
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise BadInputError(
            f"{subject} has no tokenizer files. Cannot load a tokenizer from {str(name_or_path)!r}: it holds no "
            f"vocabulary beyond {len(tokenizer)} special tokens.\n{fix}"
        )
    return tokenizer


def read_minialbert_config(
    name_or_path: str | os.PathLike, subject: str, fix: str, revision: str | None = None
) -> MiniAlbertConfig:
    """The MiniAlbert config of a folder or Hub id, its config.json read as data (no code stored with it runs).

    Anything else is a BadInputError "`subject` holds a 'bert' model, not a MiniAlbert one; `fix`" (or says that it has
    no readable config.json), `subject` and `fix` written by the caller for its own option and command.
    """
    try:
        values, _ = PretrainedConfig.get_config_dict(str(name_or_path), revision=revision)
    except OSError as error:
        raise BadInputError(f"{subject} has no readable config.json ({error}); {fix}") from error
    if not values:
        raise BadInputError(f"{subject} has no config.json; {fix}")
    if values.get("model_type") != MiniAlbertConfig.model_type:
        raise BadInputError(f"{subject} holds a {values.get('model_type')!r} model, not a MiniAlbert one; {fix}")
    with as_bad_input(f"{subject}: "):
        return MiniAlbertConfig.from_dict(values)
