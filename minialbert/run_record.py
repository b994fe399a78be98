"""What a training job records about itself, so that a rerun on its folder knows what it finds there: the options the
job was started with, its training time so far and the steps it was resumed from (`RunRecord`).

The record travels in every checkpoint (the Trainer saves a callback's `ExportableState` in trainer_state.json) and,
once the job is done, sits at the top of its folder as `training_record.json`, written last: a folder with one holds
a finished job. `minialbert.training_runs.prepare_training_output` compares it with the new run's options
(`run_options`) to finish nothing twice, to continue to a later end, to refuse a resume under other options, and to
start a stale replacement over.
"""

import dataclasses
import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_callback import ExportableState

# Options that change how a job logs, saves, shows progress or shares its result, never the result itself: a rerun
# may change them freely.
RESULT_NEUTRAL = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "logging_dir",
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "save_on_each_node",
        "save_safetensors",
        "report_to",
        "run_name",
        "project",
        "trackio_space_id",
        "disable_tqdm",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "dataloader_num_workers",
        "dataloader_prefetch_factor",
        "dataloader_persistent_workers",
        "dataloader_pin_memory",
        "preprocessing_num_workers",
    }
)
# Options that set where training ends: a rerun may raise them to continue a job (`extension_error`).
ENDS = ("max_steps", "num_train_epochs")


def run_options(*arguments: object) -> dict:
    """A training job's options as JSON values, from its argument dataclasses (TrainingArguments through `to_dict`,
    which hides tokens), without the `RESULT_NEUTRAL` ones. Dataclasses parsed from one command line share no
    option name."""
    options = {}
    for each in arguments:
        values = each.to_dict() if isinstance(each, TrainingArguments) else dataclasses.asdict(each)
        options |= values
    options = {name: value for name, value in options.items() if name not in RESULT_NEUTRAL}
    return json.loads(json.dumps(options, default=str, sort_keys=True))


def changed_options(recorded: dict, options: dict) -> list[str]:
    """The options whose value differs between a recorded job and a new one, sorted."""
    return sorted(name for name in recorded.keys() | options.keys() if recorded.get(name) != options.get(name))


def describe_changes(recorded: dict, options: dict, names: list[str]) -> str:
    """`--learning_rate 0.0005 (now 0.001), --seed 42 (now 7)`."""
    return ", ".join(f"--{name} {recorded.get(name)} (now {options.get(name)})" for name in names)


def extension_error(step: int, state: dict, options: dict) -> str | None:
    """Why the new options do not train beyond `step`, where a job's checkpoint (TrainerState `state`, as JSON) or
    result stands; None when they do."""
    if options.get("max_steps", -1) > 0:
        if options["max_steps"] > step:
            return None
        return f"--max_steps {options['max_steps']} ends at or before step {step}, which it already reached"
    epochs = options.get("num_train_epochs", 0)
    if epochs > (state.get("epoch") or 0):
        return None
    return f"--num_train_epochs {epochs} ends at or before epoch {state.get('epoch')}, which it already reached"


class RunRecord(TrainerCallback, ExportableState):
    """The record a training job keeps in each checkpoint and writes beside its result: its `options`
    (`run_options`), its training seconds so far (every segment's, from the start of training to its last save or
    its end; time after the last save of a killed segment is redone and counted once), and the steps it resumed from.

    Add it to the Trainer before `train()`; `TrainingOutput` does, with the values of the checkpoint it resumes from.
    """

    FILE_NAME = "training_record.json"

    def __init__(
        self,
        options: dict | None = None,
        train_seconds: float = 0.0,
        resumed_from_steps: list[int] | None = None,
        global_step: int = 0,
    ):
        self.options = options or {}
        self.train_seconds = train_seconds
        self.resumed_from_steps = list(resumed_from_steps or [])
        self.global_step = global_step
        self.segment_started: float | None = None

    def elapsed(self) -> float:
        """Training seconds up to now: the earlier segments' and this one's so far."""
        running = time.perf_counter() - self.segment_started if self.segment_started is not None else 0.0
        return round(self.train_seconds + running, 1)

    def state(self) -> dict:
        return {
            "args": {
                "options": self.options,
                "train_seconds": self.elapsed(),
                "resumed_from_steps": self.resumed_from_steps,
                "global_step": self.global_step,
            },
            "attributes": {},
        }

    def resumed_at(self, step: int) -> None:
        if step > 0:
            self.resumed_from_steps.append(step)

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed Trainer has loaded the checkpoint's state, whose callback entries may predate this record.
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())
        self.resumed_at(state.global_step)
        self.segment_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.global_step = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        self.train_seconds, self.segment_started = self.elapsed(), None
        self.global_step = state.global_step

    def save(self, folder: str | os.PathLike) -> None:
        Path(folder, self.FILE_NAME).write_text(json.dumps(self.state()["args"], indent=2))

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "RunRecord | None":
        """The record at the top of `folder` (a finished job's), or None."""
        try:
            return cls(**json.loads(Path(folder, cls.FILE_NAME).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def from_checkpoint(cls, state: dict) -> "RunRecord | None":
        """The record a checkpoint's trainer_state.json (`state`, as JSON) holds, or None (a checkpoint from before
        records, or from another program)."""
        entry = (state.get("stateful_callbacks") or {}).get(cls.__name__)
        if isinstance(entry, list):
            entry = entry[-1] if entry else None
        try:
            return cls(**entry["args"]) if entry else None
        except (KeyError, TypeError):
            return None
