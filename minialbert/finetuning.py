"""What the fine-tuning examples share: model options, argument parsing, tokenising splits, and the
train -> save -> evaluate -> record -> push sequence around the stock `Trainer`.

Each example keeps what is specific to its task (data columns, labels, head, metrics) and hands the rest here.
"""

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import peft
from huggingface_hub import EvalResult
from torch import nn
from transformers import HfArgumentParser, Trainer, TrainingArguments, enable_full_determinism, set_seed

from .devices import check_fsdp_device
from .errors import BadInputError
from .folders import OutputArguments
from .hub import push_to_hub, save_results
from .run_record import run_options
from .training_runs import TrainingOutput, prepare_training_output
from .tuning import TUNING_MODES, enable_tuning, save_tuned, trainable_parameters

logger = logging.getLogger(__name__)

# Trainer metrics that describe the run rather than the model.
RUN_METRICS = ("loss", "runtime", "samples_per_second", "steps_per_second", "epoch")


TASK_TUNINGS = ("full", *TUNING_MODES, "lora")


@dataclass
class TuningArguments:
    """What a fine-tuning run trains, as the examples' `--tuning`, `--rank` and `--lora_target_modules` flags."""

    tuning: str = field(default="full", metadata={"help": f"What trains: {', '.join(TASK_TUNINGS)}."})
    rank: int = field(default=8, metadata={"help": "LoRA rank (lora), or relaxation rank (relaxed) to add."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "PEFT target_modules: 'all-linear' or comma-separated names."}
    )

    def __post_init__(self):
        if self.tuning not in TASK_TUNINGS:
            raise BadInputError(f"--tuning {self.tuning!r} is not one of {', '.join(TASK_TUNINGS)}.")


def prepare_for_tuning(model: nn.Module, arguments: TuningArguments, task_type: str) -> nn.Module:
    """Set up `model` for `arguments.tuning`: unchanged (full), `enable_tuning` (adapters, relaxed), or wrapped in
    a PEFT LoRA of `task_type` (PEFT's name, e.g. "SEQ_CLS"), keeping the output layer out of "all-linear"."""
    if arguments.tuning in TUNING_MODES:
        enable_tuning(model, arguments.tuning, rank=arguments.rank)
    elif arguments.tuning == "lora":
        if arguments.lora_target_modules == "all-linear":
            # PEFT keeps the output layer out of "all-linear" for SEQ_CLS only.
            targets, excluded = (
                "all-linear",
                {"TOKEN_CLS": ["classifier"], "QUESTION_ANS": ["qa_outputs"]}.get(task_type),
            )
        else:
            targets, excluded = [name.strip() for name in arguments.lora_target_modules.split(",")], None
        config = peft.LoraConfig(
            task_type=task_type, target_modules=targets, exclude_modules=excluded, r=arguments.rank
        )
        model = peft.get_peft_model(model, config)
    return model


def save_for_task(model: nn.Module, tuning: str, output_dir: str | os.PathLike, base_model: str | None = None) -> int:
    """Save what a task adds to its base model: the whole model (full), the tuned parameters (adapters, relaxed) or
    the LoRA adapter; `base_model` is recorded for the last two. Returns the bytes that the weights and config
    take."""
    path = Path(output_dir)
    if tuning in TUNING_MODES:
        return save_tuned(model, path, base_model=base_model)
    if tuning == "lora" and base_model:
        model.peft_config["default"].base_model_name_or_path = base_model
    model.save_pretrained(path)
    names = ("model.safetensors", "config.json", "adapter_model.safetensors", "adapter_config.json")
    return sum((path / name).stat().st_size for name in names if (path / name).is_file())


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "MiniAlbert folder or Hub id (or any model with this head)."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a Hub model."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run a Hub model's own code (pin a revision)."})
    hub_base_model: str | None = field(
        default=None,
        metadata={"help": "Hub id of the base model, for --push_to_hub of adapters trained on a local folder."},
    )


def parse_arguments(
    data_arguments_class: type,
) -> tuple[ModelArguments, TuningArguments, Any, TrainingArguments, OutputArguments]:
    """Model, tuning, data, `TrainingArguments` and output-folder arguments from the command line, or from one JSON
    file argument."""
    parser = HfArgumentParser(
        (ModelArguments, TuningArguments, data_arguments_class, TrainingArguments, OutputArguments)
    )
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        return parser.parse_json_file(sys.argv[1])
    return parser.parse_args_into_dataclasses()


def data_files(data_args) -> dict[str, str]:
    """The local files an example's `--train_file`, `--validation_file` and `--test_file` name, by split."""
    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    return {split: path for split, path in files.items() if path}


def tokenize_splits(
    raw: datasets.DatasetDict, preprocess, data_args, training_args: TrainingArguments
) -> dict[str, datasets.Dataset]:
    """`preprocess` (batched) over the train/validation/test splits present, each first cut to the example's
    `--max_train_samples`, `--max_eval_samples` or `--max_predict_samples`."""
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_predict_samples,
    }
    splits = {}
    for split, limit in limits.items():
        if split in raw:
            dataset = raw[split] if limit is None else raw[split].select(range(min(limit, len(raw[split]))))
            with training_args.main_process_first(desc=f"Tokenising {split}"):
                splits[split] = dataset.map(preprocess, batched=True, remove_columns=dataset.column_names)
    return splits


@dataclass
class TaskRun:
    """One fine-tuning run of an example. Created before any work: it checks and locks the output folder
    (resuming from its last complete checkpoint, refusing a non-empty folder without one, or replacing it with
    --overwrite_output_dir only once the run is complete; `run` releases the lock) and takes over --push_to_hub, so
    the Trainer does not upload checkpoints and the end result is pushed once, checked and with its card."""

    model_args: ModelArguments
    tuning_args: TuningArguments
    training_args: TrainingArguments
    task_type: str  # the Hub's task id, e.g. "text-classification"
    dataset: str
    dataset_config: str | None = None
    output_args: OutputArguments = field(default_factory=OutputArguments)
    data_args: object | None = None  # the example's data options (a dataclass), recorded with the others
    push: bool = field(init=False)
    output: TrainingOutput = field(init=False)

    def __post_init__(self):
        args = self.training_args
        check_fsdp_device(args)
        # Seeded before the example builds its model: a new head, adapters or LoRA are drawn at random, and --seed
        # must reproduce them (the Trainer seeds only once the model exists).
        (enable_full_determinism if args.full_determinism else set_seed)(args.seed)
        self.push, args.push_to_hub = args.push_to_hub, False
        options = run_options(*filter(None, (self.model_args, self.tuning_args, self.data_args, args)))
        options |= {"task_type": self.task_type, "dataset": self.dataset, "dataset_config": self.dataset_config}
        self.output = prepare_training_output(
            args.output_dir, self.output_args.overwrite_output_dir, args.process_index == 0, options
        )
        if self.done:
            self.output.close()
            logger.info(
                "%s holds the finished result of this command: nothing to do. Raise --max_steps or "
                "--num_train_epochs to train it longer, or pass --overwrite_output_dir to run it again.",
                self.output.output_dir,
            )

    @property
    def done(self) -> bool:
        """Whether the output folder holds this run finished already (the example then stops: nothing to do)."""
        return self.output.finished is not None

    def run(self, trainer: Trainer, splits: dict[str, datasets.Dataset]) -> dict[str, float]:
        """Train (--do_train), save what the task adds to its base model, evaluate the validation (--do_eval) and
        test (--do_predict) splits, record the scores for the model card, and push (--push_to_hub). Returns every
        metric; each phase also lands in `<phase>_results.json`."""
        args = self.training_args
        with self.output, self.output.writing(trainer):
            all_metrics, results = self.train_and_evaluate(trainer, splits)
            if args.do_train and trainer.is_world_process_zero():
                save_results(args.output_dir, results)
        if self.push and args.do_train and trainer.is_world_process_zero():
            commit = push_to_hub(
                args.output_dir,
                args.hub_model_id or Path(args.output_dir).name,
                private=args.hub_private_repo,
                base_model=self.model_args.hub_base_model,
                token=args.hub_token,
            )
            logger.info("Pushed to %s", commit.commit_url)
        return all_metrics

    def train_and_evaluate(
        self, trainer: Trainer, splits: dict[str, datasets.Dataset]
    ) -> tuple[dict[str, float], list[EvalResult]]:
        args, model_args = self.training_args, self.model_args
        all_metrics, results = {}, []
        if args.do_train:
            if "train" not in splits:
                raise BadInputError("--do_train needs a train split (--train_file or a data set with one).")
            counts = trainable_parameters(trainer.model)
            start = time.perf_counter()
            metrics = self.output.train(trainer, args.resume_from_checkpoint).metrics
            metrics |= {
                "train_wall_seconds": round(time.perf_counter() - start, 1),
                "total_parameters": counts["total"],
                "trainable_parameters": counts["trainable"],
            }
            if trainer.is_world_process_zero():
                model = trainer.accelerator.unwrap_model(trainer.model)
                base = model_args.hub_base_model or model_args.model_name_or_path
                metrics["artifact_bytes"] = save_for_task(model, self.tuning_args.tuning, args.output_dir, base)
                trainer.processing_class.save_pretrained(args.output_dir)
            trainer.save_metrics("train", metrics)
            trainer.save_state()
            all_metrics |= metrics
        for split, prefix, enabled in (("validation", "eval", args.do_eval), ("test", "test", args.do_predict)):
            if not enabled or split not in splits:
                continue
            metrics = trainer.evaluate(splits[split], metric_key_prefix=prefix)
            trainer.save_metrics(prefix, metrics)
            all_metrics |= metrics
            results += [
                EvalResult(
                    task_type=self.task_type,
                    dataset_type=self.dataset,
                    dataset_name=self.dataset,
                    dataset_config=self.dataset_config,
                    dataset_split=split,
                    metric_type=name.removeprefix(f"{prefix}_"),
                    metric_value=round(value, 4),
                )
                for name, value in metrics.items()
                if isinstance(value, float) and name.removeprefix(f"{prefix}_") not in RUN_METRICS
            ]
        return all_metrics, results
