"""A training job's life in its output folder, for the commands that train (`distill`, the fine-tuning examples):
what a non-empty folder holds for the job (`prepare_training_output`: a finished job of the same options is left as
it is, a later end continues, a checkpoint of the same options resumes from the newest one written completely, any
other change is refused naming the options; `minialbert.run_record`), where it trains (in place, or beside the old
folder under `--overwrite_output_dir`), how it stops on SIGTERM or Ctrl-C (a checkpoint at the end of the current
step, `CheckpointOnSignal`), and how its result lands (`TrainingOutput`: written last, swapped in once complete).
The folder checks, lock and swaps are `minialbert.folders`'."""

import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput

from .errors import BadInputError, FolderWriteError, folder_write_error
from .folders import (
    OutputLock,
    check_is_not_a_file,
    check_writable,
    finish_interrupted_swap,
    is_empty,
    swap_in,
)
from .run_record import ENDS, RunRecord, changed_options, describe_changes, extension_error

if TYPE_CHECKING:  # the Trainer itself loads with the commands that train
    from transformers import Trainer

logger = logging.getLogger(__name__)

# transformers.trainer.TRAINER_STATE_NAME, which the Trainer writes last into a checkpoint.
TRAINER_STATE_FILE = "trainer_state.json"


def _is_complete(checkpoint: Path) -> bool:
    # The Trainer writes trainer_state.json last, after the weights, optimiser, scheduler and RNG states.
    try:
        state = json.loads((checkpoint / TRAINER_STATE_FILE).read_text())
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


class Interrupted(KeyboardInterrupt):
    """A job stopped by SIGTERM or SIGINT; `str()` is the one line to show, `exit_code` the shell's convention
    (128 + the signal's number). A KeyboardInterrupt, so no `except Exception` on the way swallows it."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class CheckpointOnSignal(TrainerCallback):
    """SIGTERM (a scheduler, a preemption, `docker stop`) or SIGINT (Ctrl-C) during training: finish the current
    step, save a checkpoint there exactly as a scheduled save would (so the rerun resumes to the uninterrupted run's
    weights), then stop with `Interrupted`. A second signal, or one outside the training loop, stops at once.

    transformers' own JIT checkpointing (`enable_jit_checkpoint`) handles SIGTERM only, waits 3 s first, may save
    before the optimiser step (a resume then redraws that step's dropout and masks), and lets `train()` return as if
    finished; hence this callback. Tested in one process; under torchrun each process handles the signal it gets."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, output: "TrainingOutput"):
        self.output = output
        self.received: int | None = None
        self.previous_handlers: dict[int, object] = {}

    def handle(self, signal_number: int, frame) -> None:
        name = signal.Signals(signal_number).name
        if self.received is not None:
            raise Interrupted(
                f"stopped by a second {name} before the checkpoint; {self.output.rerun()}", signal_number
            )
        self.received = signal_number
        logger.warning("%s received: saving a checkpoint at the end of this step, then stopping.", name)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():  # only the main thread may handle signals
            self.previous_handlers = {number: signal.signal(number, self.handle) for number in self.SIGNALS}

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()
        if self.received is not None:  # after the last step's end: the rerun redoes the steps since the last save
            raise Interrupted(
                f"stopped by {signal.Signals(self.received).name} as training ended; {self.output.rerun()}",
                self.received,
            )

    def restore(self) -> None:
        for number, handler in self.previous_handlers.items():
            signal.signal(number, handler)
        self.previous_handlers = {}

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        if self.received is not None:
            self.restore()
            checkpoint = Path(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            raise Interrupted(
                f"stopped by {signal.Signals(self.received).name} after step {state.global_step}, with "
                f"{checkpoint} saved; {self.output.rerun()}",
                self.received,
            )


@dataclass
class TrainingOutput:
    """Where a Trainer job writes, what it resumes from, what it records, and the lock it holds
    (`prepare_training_output`); a context manager whose exit releases the lock.

    A new, empty or resumable `output_dir` is written in place. One replaced with `--overwrite_output_dir` keeps
    its content until the job completes: training writes into the sibling `working_dir` (`.NAME.overwrite`), which
    `writing` swaps in at the end. A job that fails, is interrupted or is killed there leaves the old folder as it
    was and keeps the sibling, which the same command resumes; it goes only when swapped in, when a rerun with other
    options starts the replacement over, or when the user deletes it.

    `finished` is the record of a job this folder already holds with the same options: the caller has nothing to do.
    """

    output_dir: Path
    working_dir: Path
    resume_from: str | None
    is_main_process: bool = True
    lock: OutputLock | None = None
    record: RunRecord = field(default_factory=RunRecord)
    finished: RunRecord | None = None

    def __enter__(self) -> "TrainingOutput":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def replacing(self) -> bool:
        return self.working_dir != self.output_dir

    def rerun(self) -> str:
        """What to do after a stop, in words."""
        if self.replacing:
            return (
                f"run the same command (with --overwrite_output_dir) to resume the replacement kept in "
                f"{self.working_dir}, or delete that folder to start over; {self.output_dir} is unchanged."
            )
        return "run the same command to resume."

    @contextmanager
    def writing(self, trainer: "Trainer") -> Iterator[None]:
        """Point the trainer's `output_dir` at `working_dir` for the block (training, saving, evaluating), keep the
        job's `RunRecord` in its checkpoints, stop training on SIGTERM/SIGINT with a checkpoint
        (`CheckpointOnSignal`), and once the block ends without error, write the record last and put the result at
        `output_dir` (the main process does; any other process leaves)."""
        args = trainer.args
        args.output_dir = str(self.working_dir)
        on_signal = CheckpointOnSignal(self)
        trainer.add_callback(on_signal)
        trainer.add_callback(self.record)
        try:
            yield
            if self.is_main_process:
                self.record.save(self.working_dir)
                if self.replacing:
                    swap_in(self.working_dir, self.output_dir)
        except OSError as error:
            raise self._training_failed(error) from error
        finally:
            on_signal.restore()
            trainer.remove_callback(on_signal)
            trainer.remove_callback(self.record)
            args.output_dir = str(self.output_dir)

    def _training_failed(self, error: OSError) -> FolderWriteError:
        """`error` (a full disk, say) with where it hit, what is left to resume from, and what was kept."""
        checkpoint, _ = last_complete_checkpoint(self.working_dir)
        kept = f"the last complete checkpoint is {checkpoint}" if checkpoint else "no checkpoint was complete yet"
        return folder_write_error(
            error.errno,
            f"Training into {self.working_dir} failed ({error.strerror or error}); {kept}; free space (or fix the "
            f"cause) and {self.rerun()}",
        )

    def write_result(self, write: Callable[[Path], None]) -> None:
        """Write the job's result files with `write` into a staging folder, then move them to the top of the
        working folder, its `config.json` and `model.safetensors` last (and the record after them, once `writing`
        ends): a job stopped at any point leaves a folder that either lacks them (the same command resumes) or is
        complete, never one that looks finished and is not. Main process only; `write` may be called on every
        process (the Trainer's `save_model` needs them all under FSDP) as long as only the main one writes."""
        staging = self.working_dir / ".result"
        if self.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        write(staging)
        if not self.is_main_process:
            return
        last = ["config.json", "model.safetensors"]
        for entry in sorted(
            staging.iterdir(), key=lambda entry: last.index(entry.name) + 1 if entry.name in last else 0
        ):
            target = self.working_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        staging.rmdir()

    def train(self, trainer: "Trainer", resume_from: str | None = None) -> TrainOutput:
        """`trainer.train(resume_from_checkpoint=...)` from `resume_from` (default: the job's own resume point).

        From the last checkpoint of a training that had ended (stopped or killed during its final scoring or
        writing) transformers trains one step past its end (seen with 5.24), so there, unless the options now end
        later, the checkpoint's weights and state are restored instead and no step runs. Continuing to a later end
        follows the Trainer: the optimiser's state is restored and the learning-rate schedule is the one a run
        planned for the new end has from the resumed step on (linear decay: it steps up from the old schedule's end
        to that run's rate there)."""
        resume_from = resume_from or self.resume_from
        if resume_from:
            state = TrainerState.load_from_json(str(Path(resume_from, TRAINER_STATE_FILE)))
            args = trainer.args
            ends = {"max_steps": args.max_steps, "num_train_epochs": args.num_train_epochs}
            ends_later = extension_error(state.global_step, {"epoch": state.epoch}, ends) is None
            if (
                args.max_steps > 0
                and args.max_steps != state.max_steps
                or (args.max_steps <= 0 and args.num_train_epochs != state.num_train_epochs)
            ):
                trainer.add_callback(RateOfTheNewSchedule())
            if state.max_steps and state.global_step >= state.max_steps and not ends_later:
                trainer._load_from_checkpoint(str(resume_from))  # the Trainer's own loader (FSDP, PEFT, safetensors)
                trainer.state = state
                self.record.resumed_at(state.global_step)
                self.record.global_step = state.global_step
                logger.info("%s is the last checkpoint of a finished training: restored, no step run.", resume_from)
                metrics = {"train_runtime": 0.0, "train_samples_per_second": 0.0, "train_steps_per_second": 0.0}
                return TrainOutput(state.global_step, 0.0, metrics | {"epoch": state.epoch})
        return trainer.train(resume_from_checkpoint=resume_from)


class RateOfTheNewSchedule(TrainerCallback):
    """Resuming to another end than the checkpoint's: the Trainer restores the optimiser with the learning rate the
    old schedule reached and steps the new schedule only after the first resumed step, so that step would run at the
    old rate (0 at the end of a linear decay). Set the new schedule's rate for it too, so every resumed step runs at
    the rate a run planned for the new end has there. (transformers' schedules are LambdaLRs; others keep the
    Trainer's behaviour.)"""

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
        if isinstance(scheduler, LambdaLR) and optimizer is not None:
            for group, base, factor in zip(
                optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
            ):
                group["lr"] = base * factor(scheduler.last_epoch)
            scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def prepare_training_output(
    output_dir: str | os.PathLike, overwrite: bool, is_main_process: bool = True, options: dict | None = None
) -> TrainingOutput:
    """Apply the policy to a Trainer job's `output_dir` before any work: refuse what cannot be used, lock it (main
    process), and say where it trains, what it resumes from, and whether it holds this job finished already.

    `options` (`run_options` of the job's arguments) decide what a folder's earlier job may be to this one: the
    same options, finished, is `finished` (nothing to do); a later end (`--max_steps`, `--num_train_epochs`)
    continues from the last checkpoint; any other change is refused, naming the options, except under
    `--overwrite_output_dir`, where a replacement started with other options starts over. Use the result as a
    context manager (its exit releases the lock). Only the main process deletes or moves anything.
    """
    path = Path(output_dir)
    check_is_not_a_file(path)
    _refuse_unless_resumable(path, overwrite)  # before the lock: a refused folder gets no lock file beside it
    check_writable(path)
    lock = OutputLock.acquire(path) if is_main_process else None
    try:
        options = options or {}
        # A replacement a killed job had put in place is this job's result when the options match, overwrite or not.
        if is_main_process and finish_interrupted_swap(path):
            record = RunRecord.read(path)
            overwrite = overwrite and not (record and not changed_options(record.options, options))
        output = _prepare(path, overwrite, is_main_process, options)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    output.lock = lock
    return output


@dataclass
class _Held:
    """What a folder holds of a training job, read once: its newest complete checkpoint (and the newer ones cut off
    while being written), that checkpoint's trainer state, the finished job's record at the top, and the job's
    record (the finished one, else the checkpoint's)."""

    checkpoint: Path | None = None
    cut_off: list[Path] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    finished: RunRecord | None = None

    @classmethod
    def read(cls, folder: Path) -> "_Held":
        checkpoint, cut_off = last_complete_checkpoint(folder)
        state = json.loads((checkpoint / TRAINER_STATE_FILE).read_text()) if checkpoint else {}
        return cls(checkpoint, cut_off, state, RunRecord.read(folder))

    @property
    def recorded(self) -> RunRecord | None:
        return self.finished or (RunRecord.from_checkpoint(self.state) if self.checkpoint else None)


def _prepare(path: Path, overwrite: bool, is_main_process: bool, options: dict) -> TrainingOutput:
    working = path.parent / f".{path.name}.overwrite" if overwrite and not is_empty(path) else path
    held = _Held.read(working)
    recorded = held.recorded
    if working != path and (recorded or held.checkpoint):
        # A replacement an earlier run left resumes (or, finished, goes in place) only under the options it was
        # started with; otherwise every process starts it over (the main one deletes it).
        changed = changed_options(recorded.options, options) if recorded else None
        if changed is None or changed:
            logger.warning(
                "%s, the replacement an earlier run left, was started with other options (%s): starting it over.",
                working,
                describe_changes(recorded.options, options, changed) if recorded else "it recorded none",
            )
            if is_main_process:
                shutil.rmtree(working)
            held, recorded = _Held(), None
    checkpoint, finished = held.checkpoint, held.finished
    output = TrainingOutput(path, working, checkpoint and str(checkpoint), is_main_process)
    if recorded is not None:
        changed = changed_options(recorded.options, options)
        if finished is not None and not changed:
            if working != path and is_main_process:
                swap_in(working, path)  # finished before it was put in place
            output.working_dir, output.finished = path, finished
            return output
        if set(changed) - set(ENDS):
            raise BadInputError(
                f"{working} holds a job run with other options: "
                f"{describe_changes(recorded.options, options, [n for n in changed if n not in ENDS])}. Pass the "
                "folder's values to resume it, --overwrite_output_dir to start over, or choose another folder."
            )
        if changed:  # only the end changed: continue to a later one, refuse one already reached
            why = extension_error(recorded.global_step, held.state, options)
            if why or checkpoint is None:
                raise BadInputError(
                    f"{working} holds a job that trained {recorded.global_step} steps: "
                    f"{why or 'it kept no checkpoint to continue from'}. Raise --max_steps (or --num_train_epochs) "
                    "to continue it, pass the folder's values to leave it as it is, or --overwrite_output_dir to "
                    "start over."
                )
            logger.warning(
                "%s: continuing from %s to the new end (%s); the learning-rate schedule is the one a run planned "
                "for that end has from here on.",
                working,
                checkpoint,
                describe_changes(recorded.options, options, changed),
            )
    else:
        # Again after the lock: a swap a killed job left half done may have put a folder back in place.
        _refuse_unless_resumable(path, overwrite)
    if working != path and checkpoint is None and working.exists() and is_main_process:
        shutil.rmtree(working)  # an abandoned replacement with nothing to resume: start it over
    # Checkpoints cut off while being written are ours to remove, also where only they are left (the run starts over).
    _remove_cut_off(held.cut_off, is_main_process)
    if checkpoint is not None:
        if recorded is None:
            logger.warning("%s records no options (an older minialbert wrote it): resuming without checking them.",
                           checkpoint)  # fmt: skip
        if working != path:
            logger.info(
                "Resuming the interrupted replacement of %s from %s (delete %s to start it over).",
                path,
                checkpoint,
                working,
            )
        else:
            logger.info("Resuming from %s (pass --overwrite_output_dir to start over).", checkpoint)
        carried = RunRecord.from_checkpoint(held.state) or RunRecord()
        output.record = RunRecord(
            options, carried.train_seconds, carried.resumed_from_steps, held.state["global_step"]
        )
    else:
        output.record = RunRecord(options)
    return output


def _refuse_unless_resumable(path: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder that holds neither a finished job nor a checkpoint, unless `overwrite`. (A folder
    holding only checkpoints cut off while being written starts over.)"""
    if overwrite or is_empty(path) or RunRecord.read(path) is not None:
        return
    checkpoint, cut_off = last_complete_checkpoint(path)
    if checkpoint is None and set(path.iterdir()) != set(cut_off):
        raise BadInputError(
            f"Output folder {str(path)!r} is not empty and holds no checkpoint to resume from; choose another "
            "folder or pass --overwrite_output_dir."
        )
